"""The names of what pruning removes: a cascade ``Stage`` and the ``Unit`` it removes one by one.

Both are ``StrEnum``s, so a member equals, hashes and formats as its text and plain strings
("heads", "channel") still work wherever a kind is taken. Reports and cards store ``.value``,
plain text, so JSON and YAML read as before.

Example:
    >>> Stage("heads") is Stage.HEADS, f"{Unit.KV_GROUP}", Unit.CHANNEL == "channel"
    (True, 'kv_group', True)
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """A cascade stage, in the cascade's order, named after what it removes."""

    LAYERS = "layers"
    HEADS = "heads"
    CHANNELS = "channels"


class Unit(StrEnum):
    """One removable unit: a layer, an attention head, a KV group (GQA) or an FFN channel."""

    LAYER = "layer"
    HEAD = "head"
    KV_GROUP = "kv_group"
    CHANNEL = "channel"
