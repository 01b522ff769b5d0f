"""The ``ingest`` section: the size limit checked before a message is decoded.

Example:
    >>> IngestConfig().max_payload_bytes is None
    True
"""

from __future__ import annotations

from pydantic import Field

from slewguard.service.config.base import StrictModel


class IngestConfig(StrictModel):
    """Limits on what the daemon takes from the broker, checked before any decoding."""

    max_payload_bytes: int | None = Field(None, ge=256, le=268_435_455, description="Largest "
                                          "message in bytes; a larger one is dead-lettered "
                                          "(reason too_large) before decoding. None: the "
                                          "largest binary float32 window the sensors can send "
                                          "(60 s at the highest sensors.sample_rate_hz, or at "
                                          "50 kHz when a sensor sets none, plus the header). "
                                          "JSON needs 10-20 bytes a sample, so its windows "
                                          "must be shorter or this raised.")
