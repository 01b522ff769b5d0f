"""The ``outbox`` section, and ``sinks``: the durable queue and the sinks that read it.

``sinks`` maps a name of the operator's choosing to one sink's settings, tagged by ``type``
(``influx``, or a type registered in ``sinks.registry``); each type's settings class lives in
its sink's file and derives from ``SinkConfig``. A null entry is a sink turned off. The alert
webhooks are in ``alerts``, the results publisher in ``mqtt``.

Example:
    >>> sinks = typed_sinks({"tsdb": {"type": "influx", "url": "http://127.0.0.1:8086"}})
    >>> type(sinks["tsdb"]).__name__, sinks["tsdb"].batch_size
    ('InfluxConfig', 500)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from slewguard.service.config.base import StrictModel

NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")  # one environment-variable level
RESERVED = ("alerts", "mqtt")  # the built-in sinks' names


class OutboxConfig(StrictModel):
    """The durable SQLite outbox between diagnosis and the sinks."""

    path: Path = Field(Path("slewguard-outbox.sqlite3"), description="SQLite database file.")
    max_bytes: int = Field(256 * 2**20, ge=2**20, description="Disk quota in bytes; sent rows "
                           "are deleted first when it is reached.")
    when_full: Literal["reject", "drop_oldest"] = Field("reject", description="With only unsent "
                                                        "rows left at the quota: 'reject' new "
                                                        "results (MQTT redelivers later) or "
                                                        "'drop_oldest' unsent ones (counted as "
                                                        "lost).")


@dataclass(frozen=True)
class ForwarderPace:
    """How the forwarder feeds the sinks: results per batch, idle wait, retry backoff."""

    batch_size: int
    idle_s: float
    retry_min_s: float
    retry_max_s: float


class SinkConfig(StrictModel):
    """One entry of ``sinks``: a sink's settings, tagged by its type."""

    type: str = Field(description="Sink type: `influx`, or a type registered in "
                      "slewguard/service/sinks/registry.py.")

    def pace(self) -> ForwarderPace | None:
        """The forwarder's pace this sink asks for, or None (the first sink that asks sets it)."""
        return None

    def summary(self) -> str:
        """A few words for ``check-config``'s summary line; no secret."""
        return self.type


def typed_sinks(value: Any) -> Any:
    """Each entry of a ``sinks`` mapping validated by its type's settings class.

    Errors keep their key path (``tsdb.url``), so ``load_config`` reports them like any
    other section's. A value that is not a mapping is left to the field's own validation.

    Example:
        >>> typed_sinks({"Tsdb": {"type": "influx", "url": "http://h:8086"}})
        Traceback (most recent call last):
        ...
        pydantic_core._pydantic_core.ValidationError: 1 validation error for sinks
        Tsdb
          Value error, name 'Tsdb': use lower-case letters, digits and single underscores ...
    """
    if not isinstance(value, dict):
        return value
    typed: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for name, entry in value.items():
        try:
            typed[name] = _typed_entry(str(name), entry)
        except ValueError as exc:
            errors += _line_errors(str(name), entry, exc)
    if errors:
        raise ValidationError.from_exception_data("sinks", errors)
    return typed


def _config_class(key: str) -> type[SinkConfig]:
    from slewguard.service.sinks.registry import config_class  # the sinks import the config

    return config_class(key)


def _typed_entry(name: str, entry: Any) -> SinkConfig | None:
    if not NAME.match(name) or name in RESERVED:
        why = (f"the built-in sink {name!r} has this name: choose another" if name in RESERVED else
               f"use lower-case letters, digits and single underscores (it is the "
               f"SLEWGUARD_SINKS__<NAME>__<KEY> level), e.g. {name.lower().strip('_') or 'tsdb'}")
        raise ValueError(f"name {name!r}: {why}")
    if entry is None or isinstance(entry, SinkConfig):
        return entry
    if not isinstance(entry, dict):
        raise ValueError(f"a sink's settings are a mapping with a type, got "
                         f"{type(entry).__name__}")
    if "type" not in entry:
        raise _MissingTypeError()
    return _config_class(str(entry["type"])).model_validate(entry)


class _MissingTypeError(ValueError):
    """A ``sinks`` entry without ``type``."""


def _line_errors(name: str, entry: Any, exc: ValueError) -> list[dict[str, Any]]:
    """pydantic line errors under ``name`` for what ``_typed_entry`` raised."""
    if isinstance(exc, _MissingTypeError):
        return [{"type": "missing", "loc": (name, "type"), "input": entry}]
    if not isinstance(exc, ValidationError):
        where = (name, "type") if str(exc).startswith("unknown sink type") else (name,)
        return [{"type": "value_error", "loc": where, "input": entry, "ctx": {"error": exc}}]
    return [{"type": err["type"], "loc": (name, *err["loc"]), "input": err["input"],
             "ctx": err.get("ctx", {})} for err in exc.errors(include_url=False)]
