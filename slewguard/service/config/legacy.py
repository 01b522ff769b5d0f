"""Older config layouts, still read: each is rewritten to today's and named in a warning.

Before the ``sinks`` mapping, the InfluxDB sink was the top-level section ``influx`` and its
variables ``SLEWGUARD_INFLUX__<KEY>``. Both still work: the section becomes the sink named
``influx`` (``sinks.influx`` with ``type: influx``) and the variables address that entry, so a
deployed file and its environment keep their meaning. ``config_from_dict`` logs one warning
per old name it met, with the new spelling.

Example:
    >>> data, notes = upgrade({"site": "y", "influx": {"url": "http://h:8086"}})
    >>> data["sinks"]
    {'influx': {'type': 'influx', 'url': 'http://h:8086'}}
    >>> env_parts(["influx", "token"])
    ['sinks', 'influx', 'token']
"""

from __future__ import annotations

from typing import Any

# old top-level section -> the sinks entry it is now (name, type)
SECTIONS = {"influx": ("influx", "influx")}


def upgrade(data: dict) -> tuple[dict, list[str]]:
    """``data`` with every old section moved under ``sinks``, and one note per move."""
    old = [key for key in SECTIONS if key in data]
    if not old:
        return data, []
    data = dict(data)
    sinks = dict(data.get("sinks") or {})
    notes = []
    for key in old:
        name, kind = SECTIONS[key]
        section = data.pop(key)
        if name in sinks:
            raise ValueError(f"{key}: the old section and sinks.{name} both configure the sink "
                             f"{name!r}: keep sinks.{name} and delete {key}")
        sinks[name] = None if section is None else {"type": kind, **section}
        notes.append(f"the section {key!r} is the old layout, read as sinks.{name} with type: "
                     f"{kind}; move it there (docs/configuration.md)")
    data["sinks"] = sinks
    return data, notes


def env_parts(parts: list[str]) -> list[str]:
    """The key path an environment variable's levels address today."""
    if parts and parts[0] in SECTIONS:
        return ["sinks", SECTIONS[parts[0]][0], *parts[1:]]
    return parts


def fill_types(data: dict) -> None:
    """An entry that old variables made from nothing gets its type (in place)."""
    sinks: Any = data.get("sinks")
    for name, kind in SECTIONS.values():
        if isinstance(sinks, dict) and isinstance(sinks.get(name), dict):
            sinks[name].setdefault("type", kind)
