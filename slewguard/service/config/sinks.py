"""The ``outbox`` and ``influx`` sections: the durable queue and the time-series sink after it.

The alert webhooks, the other sink, are in ``alerts``.

Example:
    >>> InfluxConfig(url="http://127.0.0.1:8086").batch_size
    500
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from slewguard.service.config.base import StrictModel, check_backoff, check_http_url


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


class InfluxConfig(StrictModel):
    """The InfluxDB v2 write API (VictoriaMetrics speaks it too)."""

    url: str = Field(description="Base URL, e.g. http://127.0.0.1:8086.")
    token: SecretStr | None = Field(None, description="API token; prefer SLEWGUARD_INFLUX__TOKEN.")
    org: str = Field("slewguard", description="Organisation.")
    bucket: str = Field("slewguard", description="Bucket.")
    measurement: str = Field("bearing_diagnosis", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                             description="Measurement name of every point.")
    batch_size: int = Field(500, ge=1, le=10_000, description="Results per write request.")
    flush_interval_s: float = Field(1.0, gt=0, description="Longest idle wait of the forwarder; "
                                    "newly stored results wake it at once.")
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout per write in seconds.")
    retry_min_s: float = Field(0.5, gt=0, description="First backoff after a retryable error.")
    retry_max_s: float = Field(60.0, gt=0, description="Longest backoff between retries.")

    @model_validator(mode="after")
    def _url_and_backoff(self) -> InfluxConfig:
        check_http_url(self.url)
        check_backoff(self.retry_min_s, self.retry_max_s)
        return self
