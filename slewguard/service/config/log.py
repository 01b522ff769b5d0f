"""The ``logging`` section: level, line format and the periodic status line.

Example:
    >>> LoggingConfig().format
    'text'
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from slewguard.service.config.base import StrictModel


class LoggingConfig(StrictModel):
    """Log output."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    format: Literal["text", "json"] = Field("text", description="One line of text or JSON per "
                                            "record.")
    status_interval_s: float = Field(300.0, ge=0, description="Seconds between the one-line "
                                     "INFO status (windows/s, rejected, queue, outbox depth "
                                     "and age, dead letters, broker); 0 turns it off.")
