"""The names of what pruning removes: a cascade ``Stage``, the ``Unit`` it removes one by one and
a ``Removal``, one stage's cut in one place.

``Stage`` and ``Unit`` are ``StrEnum``s, so a member equals, hashes and formats as its text and
plain strings ("heads", "channel") still work wherever a kind is taken. Reports and cards store
``.value``, plain text, so JSON and YAML read as before.

Example:
    >>> Stage("heads") is Stage.HEADS, f"{Unit.KV_GROUP}", Unit.CHANNEL == "channel"
    (True, 'kv_group', True)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


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


@dataclass(frozen=True)
class Removal:
    """The ``indices`` of the ``unit``s removed from ``layer``, numbered as in the model the
    removal was cut from; whole layers have ``layer`` None and their layer numbers as indices.

    ``unit`` may be given as text and ``indices`` as any ints: they are stored as a ``Unit`` and
    a tuple of ints, so removals compare, hash and round-trip through JSON (``as_dict``).

    Example:
        >>> cut = Removal("head", 0, [1, 3])
        >>> cut
        Removal(unit=<Unit.HEAD: 'head'>, layer=0, indices=(1, 3))
        >>> cut.as_dict()
        {'unit': 'head', 'layer': 0, 'indices': [1, 3]}
        >>> Removal.from_dict(cut.as_dict()) == cut, Removal(Unit.LAYER, None, (2,)).layer
        (True, None)
    """

    unit: Unit
    layer: int | None
    indices: tuple[int, ...]

    def __post_init__(self) -> None:
        # frozen: normalise through object.__setattr__ so that text units and index lists (or
        # tensors' .tolist()) from callers give the same, hashable record
        object.__setattr__(self, "unit", Unit(self.unit))
        object.__setattr__(self, "layer", None if self.layer is None else int(self.layer))
        object.__setattr__(self, "indices", tuple(int(i) for i in self.indices))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: {"unit": text, "layer": int or None, "indices": [ints]}."""
        return {"unit": self.unit.value, "layer": self.layer, "indices": list(self.indices)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Removal:
        """The removal ``as_dict`` wrote."""
        return cls(data["unit"], data["layer"], data["indices"])
