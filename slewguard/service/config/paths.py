"""Key paths into the tree: the type annotation a path such as ``mqtt.tls.ca_file`` leads to.

Both the environment overrides (which need a field's type to parse its text) and the error
messages (which list a section's allowed keys) walk the tree this way. Where the path enters a
``sinks`` entry, the entry's ``type`` in the data (when given) picks its settings class.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from slewguard.service.config.root import ServiceConfig
from slewguard.service.config.sinks import SinkConfig


def is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def annotation_at(loc: tuple[str, ...], data: Any = None) -> Any:
    """The type annotation of the field at key path ``loc``, None where no field is; ``data``
    (the raw mapping) tells which type a ``sinks`` entry is.

    Example:
        >>> annotation_at(("alerts", "webhooks", "0", "headers"))
        dict[str, str]
        >>> annotation_at(("sinks", "db", "token"), {"sinks": {"db": {"type": "influx"}}})
        pydantic.types.SecretStr | None
    """
    annotation: Any = ServiceConfig
    node = data
    for part in loc:
        model = _typed(model_in(annotation), node)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if model is not None:
            field = model.model_fields.get(part)
            annotation = field.annotation if field is not None else None
        elif typing.get_origin(annotation) in (dict, Mapping) and len(args) == 2:
            annotation = args[1]
        elif part.isdigit() and typing.get_origin(annotation) in (list, tuple):
            annotation = args[0] if args else None
        else:
            return None
        node = _child(node, part)
    return annotation


def model_at(loc: tuple[str, ...], data: Any = None) -> type[BaseModel] | None:
    """The model of the section at ``loc`` (a ``sinks`` entry's by its ``type`` in ``data``).

    Example:
        >>> model_at(("sinks", "db"), {"sinks": {"db": {"type": "influx"}}}).__name__
        'InfluxConfig'
    """
    node = data
    for part in loc:
        node = _child(node, part)
    return _typed(model_in(annotation_at(loc, data)), node)


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel class in ``annotation`` (itself, or inside Optional / Union)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if is_union(annotation):
        for arg in typing.get_args(annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
    return None


def _typed(model: type[BaseModel] | None, node: Any) -> type[BaseModel] | None:
    """A ``sinks`` entry's settings class from its ``type``; any other model as it is."""
    if model is not SinkConfig or not isinstance(node, dict):
        return model
    from slewguard.service.sinks.registry import TYPES, config_class

    kind = node.get("type")
    return config_class(kind) if isinstance(kind, str) and kind in TYPES else model


def _child(node: Any, part: str) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and part.isdigit() and int(part) < len(node):
        return node[int(part)]
    return None
