"""Loading: YAML file, environment overrides, validation, one "key.path: message" per error."""

from __future__ import annotations

import logging
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr, ValidationError

from slewguard.service.config import legacy
from slewguard.service.config.base import ConfigError
from slewguard.service.config.env import apply_env
from slewguard.service.config.paths import annotation_at, is_union, model_at
from slewguard.service.config.root import ServiceConfig
from slewguard.service.redact import redact_urls

log = logging.getLogger("slewguard.service.config")


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> ServiceConfig:
    """Read a YAML file, apply ``SLEWGUARD_*`` overrides from ``env`` (default: os.environ).

    Raises ``ConfigError`` naming the file and every bad key path.

    Example:
        >>> load_config("deploy/slewguard.example.yaml", env={}).mqtt.qos
        1
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror or exc}"], str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}{problem}"], str(path)) from None
    return config_from_dict({} if data is None else data, env, source=str(path))


def config_from_dict(data: Any, env: Mapping[str, str] | None = None,
                     source: str = "") -> ServiceConfig:
    """Validate an already-parsed mapping (plus env overrides) into a ``ServiceConfig``.

    Example:
        >>> config_from_dict({"site": "y", "sensors": [{"sensor_id": "s1", "bearing":
        ...                   "cwru-6205"}]}, env={}).sensors[0].rpm_source
        'payload'
    """
    if not isinstance(data, dict):
        raise ConfigError([f"the top level must be a mapping of sections, got "
                           f"{type(data).__name__}"], source)
    env = os.environ if env is None else env
    try:
        data, notes = legacy.upgrade(data)
        merged, from_env = apply_env(data, env, notes)
    except ConfigError as exc:
        raise ConfigError(exc.errors, source) from None
    except ValueError as exc:
        raise ConfigError([str(exc)], source) from None
    for note in notes:
        log.warning("%s: %s", source or "config", note)
    try:
        return ServiceConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError([_describe(e, from_env, merged) for e in exc.errors()],
                          source) from None


def _describe(error: Mapping[str, Any], from_env: dict[tuple, str], data: Any = None) -> str:
    """One "key.path: message" line for a pydantic error dict."""
    loc = tuple(str(p) for p in error["loc"])
    msg = redact_urls(str(error["msg"]).removeprefix("Value error, "))
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1], data)
        if allowed:
            msg += f" (allowed: {', '.join(sorted(allowed))})"
    elif error["type"] != "missing" and not isinstance(error.get("input"), dict | list) and (
            not _may_be_secret(loc, data)):
        msg += f" (got {redact_urls(repr(error.get('input')))})"
    var = from_env.get(loc)
    if var:
        msg += f" (from ${var})"
    return f"{'.'.join(loc) or '(top level)'}: {msg}"


def _may_be_secret(loc: tuple[str, ...], data: Any = None) -> bool:
    """True for passwords, tokens and HTTP headers (Authorization), whose values are not shown."""
    annotation = annotation_at(loc, data)
    args = typing.get_args(annotation) if is_union(annotation) else (annotation,)
    return bool(set(loc) & {"password", "token", "headers"}) or SecretStr in args


def _allowed_keys(loc: tuple[str, ...], data: Any = None) -> list[str]:
    """Field names of the model found by walking ``loc`` down from ServiceConfig."""
    model = model_at(loc, data)
    return list(model.model_fields) if model is not None else []
