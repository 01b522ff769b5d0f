"""InfluxDB v2 sink: one point per result, on the window's start time, written synchronously.

Point = measurement + tags site/asset/bearing/sensor/model/predicted + numeric fields
(confidence, rpm, seq, p_<class> per class probability, every finite feature) at ``start_ns``
with nanosecond precision. The same window always maps to the same series key and timestamp,
so InfluxDB overwrites a redelivered window instead of adding a point; the series carries every
part of ``Result.key()`` as a tag, so ``acc1`` on two assets at the same instant is two points.
Non-finite values are left out (line protocol cannot carry NaN).
VictoriaMetrics accepts the same writes. ``build`` makes the sink from the ``influx`` section,
none without one; influxdb_client is imported only once a sink is made or a point built, so a
daemon without a database never loads it.

Example:
    >>> from slewguard.service.config.sinks import InfluxConfig
    >>> from slewguard.service.result import Result
    >>> r = Result("y", "crane", "slew", "s1", "m1", "healthy", 0.9, {"healthy": 0.9},
    ...            {"rms": 0.2}, 6.0, 3, 1_700_000_000_000_000_000, "t")
    >>> to_point(r, "bearing_diagnosis").to_line_protocol()[:70]
    'bearing_diagnosis,asset=crane,bearing=slew,model=m1,predicted=healthy,'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from slewguard.service.config.sinks import InfluxConfig
from slewguard.service.redact import redact_urls
from slewguard.service.result import Result
from slewguard.service.sinks import PermanentSinkError, RetryableSinkError, Sink

if TYPE_CHECKING:  # influxdb_client (13 MiB) is imported only when the sink is used
    from influxdb_client import Point
    from influxdb_client.rest import ApiException

    from slewguard.service.sinks.registry import SinkContext

TAGS = ("site", "asset", "bearing", "sensor", "model", "predicted")
# Data the server will never take: a retry cannot help (413: the forwarder bisects the batch).
PERMANENT_STATUS = frozenset({400, 413, 422})


def build(context: SinkContext) -> list[Sink]:
    """The InfluxDB sink for the ``influx`` section; none without one."""
    if context.config.influx is None:
        return []
    return [InfluxSink(context.config.influx)]


def to_point(result: Result, measurement: str) -> Point:
    """The InfluxDB point for one result (numeric fields only, NaN/inf left out).

    Example:
        >>> r = Result("y", "a", "b", "s", "m", "healthy", 1.0, {}, {"kurtosis": math.nan},
        ...            6.0, 0, 5, "t")
        >>> "kurtosis" in to_point(r, "d").to_line_protocol()
        False
    """
    from influxdb_client import Point, WritePrecision

    point = Point(measurement).time(result.start_ns, WritePrecision.NS)
    for tag in TAGS:
        point.tag(tag, getattr(result, tag))
    fields: dict[str, float | int] = {k: float(v) for k, v in result.features.items()}
    fields.update({f"p_{k}": float(v) for k, v in result.probabilities.items()})
    fields.update(confidence=float(result.confidence), rpm=float(result.rpm))
    for name, value in fields.items():
        if math.isfinite(value):
            point.field(name, value)
    point.field("seq", int(result.seq))  # always an integer field: InfluxDB fixes field types
    return point


class InfluxSink:
    """Writes results to an InfluxDB v2 write API with a synchronous WriteApi.

    Example:
        >>> from slewguard.service.config.sinks import InfluxConfig
        >>> InfluxSink(InfluxConfig(url="http://127.0.0.1:1")).name
        'influx'
    """

    name = "influx"

    def __init__(self, config: InfluxConfig) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.config = config
        token = config.token.get_secret_value() if config.token is not None else ""
        # retries=False: the forwarder owns retrying (with backoff, outbox-backed)
        self._client = InfluxDBClient(url=config.url, token=token, org=config.org,
                                      timeout=int(config.timeout_s * 1000), retries=False)
        self._write = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, results: Sequence[Result]) -> None:
        """Write every result as one request; raises Retryable/PermanentSinkError."""
        import urllib3
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException

        if not results:
            return
        points = [to_point(r, self.config.measurement) for r in results]
        try:
            self._write.write(bucket=self.config.bucket, org=self.config.org, record=points,
                              write_precision=WritePrecision.NS)
        except ApiException as exc:
            raise classify_status(exc.status, _body(exc)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            detail = redact_urls(f"{self.config.url}: {exc}")  # the URL may hold a password
            raise RetryableSinkError("connection", detail) from exc

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._write.close()
        self._client.close()


def classify_status(status: int | None, body: str = "") -> RetryableSinkError | PermanentSinkError:
    """The sink error for an HTTP error status from the write API.

    Example:
        >>> type(classify_status(503)).__name__, classify_status(400, "bad field").reason
        ('RetryableSinkError', 'http_400')
    """
    reason = f"http_{status}" if status else "http_error"
    message = f"InfluxDB answered {status}: {body[:300]}".rstrip(": ")
    if status in PERMANENT_STATUS:
        return PermanentSinkError(reason, message)
    if status in (401, 403, 404):
        message += " (check influx.token, org and bucket: results wait in the outbox meanwhile)"
    return RetryableSinkError(reason, message)


def _body(exc: ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return str(body or exc.reason or "")
