"""Environment overrides: ``SLEWGUARD_<SECTION>__<KEY>`` replaces the key of the same path."""

from __future__ import annotations

import copy
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import SecretStr

from slewguard.service.config import legacy
from slewguard.service.config.base import ConfigError
from slewguard.service.config.paths import annotation_at, is_union, model_in
from slewguard.service.config.root import ServiceConfig

ENV_PREFIX = "SLEWGUARD_"


def apply_env(data: dict, env: Mapping[str, str],
              notes: list[str] | None = None) -> tuple[dict, dict[tuple, str]]:
    """Copy of ``data`` with overrides; also maps each overridden key path to its variable.
    A variable of an old layout (``legacy``) addresses today's key and adds a line to ``notes``.
    """
    merged = copy.deepcopy(data)
    from_env: dict[tuple, str] = {}
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in var[len(ENV_PREFIX):].split("__")]
        if parts[0] in legacy.SECTIONS and notes is not None:
            new = ENV_PREFIX + "__".join(legacy.env_parts(parts)).upper()
            notes.append(f"{var} is the old name of {new}; rename it")
        parts = legacy.env_parts(parts)
        if parts[0] not in ServiceConfig.model_fields or "" in parts:
            continue  # SLEWGUARD_CWRU_DIR and friends belong to other tools
        node: Any = merged
        for i, part in enumerate(parts[:-1]):
            key: Any = int(part) if isinstance(node, list) and part.isdigit() else part
            if isinstance(node, list) and not (isinstance(key, int) and key < len(node)):
                raise ConfigError([f"{'.'.join(parts[:i + 1])}: {var} indexes past the "
                                   f"{len(node)} entries in the file"])
            if isinstance(node, dict) and not isinstance(node.get(key), dict | list):
                node[key] = {}
            node = node[key]
        node[parts[-1]] = _env_value(var, env[var], annotation_at(tuple(parts), merged))
        from_env[tuple(parts)] = var
    legacy.fill_types(merged)
    return merged, from_env


def _env_value(var: str, value: str, annotation: Any) -> Any:
    """The override for a field of type ``annotation``: verbatim text unless the field is a
    list or mapping (then flow YAML, which includes JSON); ``null``/``~`` clear a field that
    takes None and no text. Secrets are text, so a password like ``[x`` or ``null`` stays
    itself; a parse error names ``var`` but never echoes ``value``, which may be a secret.

    Example:
        >>> _env_value("SLEWGUARD_MQTT__TOPICS", "[a/+/vib, b/#]", list[str])
        ['a/+/vib', 'b/#']
        >>> _env_value("SLEWGUARD_MQTT__PASSWORD", "null", SecretStr | None)
        'null'
    """
    if _is_structured(annotation):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise ConfigError([f"{var}: not valid YAML/JSON{where}; give a flow list like "
                               "[a, b] or a mapping like {key: value}, quoting items that "
                               "hold ',', ':', '[' or '{'"]) from None
    if value.strip() in ("null", "~") and _takes_none_but_no_text(annotation):
        return None
    return value


def _is_structured(annotation: Any) -> bool:
    """True for list, tuple, set and mapping types and for sub-models (also inside Optional)."""
    if model_in(annotation) is not None:
        return True
    args = typing.get_args(annotation) if is_union(annotation) else (annotation,)
    containers = (list, tuple, set, frozenset, dict, Mapping, typing.Sequence)
    return any(typing.get_origin(a) in containers or a in containers for a in args)


def _takes_none_but_no_text(annotation: Any) -> bool:
    """True for ``int | None`` and the like, where "null" cannot be a meant value."""
    if not is_union(annotation):
        return False
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    texts = (str, SecretStr, Path)
    return len(args) < len(typing.get_args(annotation)) and not any(
        a in texts or typing.get_origin(a) is Literal for a in args)
