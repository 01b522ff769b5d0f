"""Key paths into the tree: the type annotation a path such as ``mqtt.tls.ca_file`` leads to.

Both the environment overrides (which need a field's type to parse its text) and the error
messages (which list a section's allowed keys) walk the tree this way.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from slewguard.service.config.root import ServiceConfig


def is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def annotation_at(loc: tuple[str, ...]) -> Any:
    """The type annotation of the field at key path ``loc``, None where no field is.

    Example:
        >>> annotation_at(("alerts", "webhooks", "0", "headers"))
        dict[str, str]
    """
    annotation: Any = ServiceConfig
    for part in loc:
        model = model_in(annotation)
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
    return annotation


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel class in ``annotation`` (itself, or inside Optional / Union)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if is_union(annotation):
        for arg in typing.get_args(annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
    return None
