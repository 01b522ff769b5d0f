"""The ``http`` section: where the Prometheus /metrics and the health endpoints listen.

Example:
    >>> HttpConfig().port
    9108
"""

from __future__ import annotations

from pydantic import Field

from slewguard.service.config.base import StrictModel


class HttpConfig(StrictModel):
    """The HTTP server for /metrics, /healthz and /readyz."""

    host: str = Field("127.0.0.1", description="Bind address; 0.0.0.0 exposes it to the network.")
    port: int = Field(9108, ge=0, le=65535, description="TCP port; 0 picks a free one (tests).")
