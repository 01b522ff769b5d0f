"""The ``--family`` names of the model families, read from the family files without importing them.

``slewguard --help`` builds every subcommand, ``train --family`` and its choices included, and
must not import torch (the base install has none), while every file in
``slewguard/models/families/`` imports torch and transformers. So ``choices()`` reads each
file's source instead: the literal ``model_type``, ``backbones`` and ``pretrained`` arguments of
its ``Family(...)`` call. ``slewguard.models.families`` imports the same files
(``family_modules``) and ``backbones.SUPPORTED_FAMILIES`` orders the registry's names the same
way (``backbone_names``); tests/models/test_models_cli.py checks that the two agree.

Example:
    >>> [name for name in choices() if name in ("gpt2", "smollm2", "minilm", "tiny-bert")]
    ['minilm', 'smollm2', 'gpt2', 'tiny-bert']
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
from collections.abc import Iterable
from pathlib import Path

FAMILIES_PACKAGE = "slewguard.models.families"
TINY = "tiny-"  # tiny-<model_type>: every family's two-layer random test model


def family_modules(paths: Iterable[str]) -> list[str]:
    """The family modules in the package folders ``paths``: every module, ``_``-prefixed ones
    (helpers) excepted, in name order."""
    return sorted({info.name for info in pkgutil.iter_modules(list(paths))
                   if not info.ispkg and not info.name.startswith("_")})


def backbone_names(families: Iterable[tuple[str, tuple[str, ...], bool]]) -> tuple[str, ...]:
    """Every ``--family`` name from ``(model_type, backbones, pretrained)`` rows in module order:
    the backbones with shipped weights, then the from-scratch ones, then ``tiny-<model_type>``.

    Example:
        >>> backbone_names([("gpt2", ("gpt2",), False), ("llama", ("llama", "smollm2"), True)])
        ('llama', 'smollm2', 'gpt2', 'tiny-gpt2', 'tiny-llama')
    """
    rows = list(families)
    ordered = sorted(rows, key=lambda row: not row[2])  # stable: module order within each
    return (*(name for _, names, _ in ordered for name in names),
            *(f"{TINY}{model_type}" for model_type, _, _ in rows))


def read_family(path: Path) -> tuple[str, tuple[str, ...], bool] | None:
    """``(model_type, backbones, pretrained)`` from the ``Family(...)`` call in the file at
    ``path``, None for a file without one (a helper).

    Example:
        >>> read_family(Path(__file__).parent / "families" / "bert.py")
        ('bert', ('minilm', 'bert'), True)
    """
    calls = [node for node in ast.walk(ast.parse(Path(path).read_text("utf-8"), str(path)))
             if isinstance(node, ast.Call) and _name(node.func) == "Family"]
    if not calls:
        return None
    if len(calls) > 1:
        raise ValueError(f"{path} has {len(calls)} Family(...) calls: one family per file")
    given = {kw.arg: kw.value for kw in calls[0].keywords if kw.arg is not None}
    try:
        model_type = ast.literal_eval(given["model_type"])
        names = tuple(ast.literal_eval(given["backbones"])) if "backbones" in given else ()
        if not isinstance(model_type, str) or not all(isinstance(n, str) for n in names):
            raise ValueError("not strings")
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{path}: write model_type='...' and backbones=('...', ...) out as "
                         "literals in its Family(...) call (the CLI reads them without "
                         "importing the file)") from exc
    pretrained = "pretrained" in given and not (isinstance(given["pretrained"], ast.Constant)
                                                and given["pretrained"].value is None)
    return model_type, names, pretrained


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


def choices() -> tuple[str, ...]:
    """Every ``--family`` name in ``backbones.SUPPORTED_FAMILIES``'s order, without torch.

    ``find_spec`` locates the families package without running its ``__init__`` (which imports
    every family and with them torch).
    """
    folders = list(importlib.util.find_spec(FAMILIES_PACKAGE).submodule_search_locations)
    rows = []
    for name in family_modules(folders):
        # the first folder holding the module, as the import finds it
        path = [p for p in (Path(f, f"{name}.py") for f in folders) if p.is_file()][0]
        row = read_family(path)
        if row is not None:
            rows.append(row)
    return backbone_names(rows)
