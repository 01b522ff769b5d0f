"""InfluxDB v2 sink: one point per result, on the window's start time, written synchronously.

Point = measurement + tags site/asset/bearing/sensor/model/predicted + numeric fields
(confidence, rpm, seq, p_<class> per class probability, every finite feature) at ``start_ns``
with nanosecond precision. The same window always maps to the same series key and timestamp,
so InfluxDB overwrites a redelivered window instead of adding a point; the series carries every
part of ``Result.key()`` as a tag, so ``acc1`` on two assets at the same instant is two points.
Non-finite values are left out (line protocol cannot carry NaN).
VictoriaMetrics accepts the same writes. The sink type ``influx``: ``Config`` (``InfluxConfig``)
holds the settings of one ``sinks`` entry with ``type: influx`` and ``build`` makes its sink;
influxdb_client is imported only once a sink is made or a point built, so a daemon without a
database never loads it.

Example:
    >>> from slewguard.service.result import Result
    >>> r = Result("y", "crane", "slew", "s1", "m1", "healthy", 0.9, {"healthy": 0.9},
    ...            {"rms": 0.2}, 6.0, 3, 1_700_000_000_000_000_000, "t")
    >>> to_point(r, "bearing_diagnosis").to_line_protocol()[:70]
    'bearing_diagnosis,asset=crane,bearing=slew,model=m1,predicted=healthy,'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, model_validator

from slewguard.service.config.base import check_backoff, check_http_url
from slewguard.service.config.sinks import ForwarderPace, SinkConfig
from slewguard.service.redact import redact_url, redact_urls
from slewguard.service.result import Result
from slewguard.service.sinks import PermanentSinkError, RetryableSinkError, Sink

if TYPE_CHECKING:  # influxdb_client (13 MiB) is imported only when the sink is used
    from influxdb_client import Point
    from influxdb_client.rest import ApiException

    from slewguard.service.sinks.registry import SinkContext

TAGS = ("site", "asset", "bearing", "sensor", "model", "predicted")
# Data the server will never take: a retry cannot help (413: the forwarder bisects the batch).
PERMANENT_STATUS = frozenset({400, 413, 422})


class InfluxConfig(SinkConfig):
    """A `sinks` entry with `type: influx`: the InfluxDB v2 write API (VictoriaMetrics speaks
    it too)."""

    type: Literal["influx"] = Field("influx", description="The sink type.")
    url: str = Field(description="Base URL, e.g. http://127.0.0.1:8086.")
    token: SecretStr | None = Field(None, description="API token; prefer the environment, "
                                    "SLEWGUARD_SINKS__<NAME>__TOKEN.")
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

    def pace(self) -> ForwarderPace:
        """The database sets the forwarder's pace: its batch size, idle wait and backoff."""
        return ForwarderPace(self.batch_size, self.flush_interval_s, self.retry_min_s,
                             self.retry_max_s)

    def summary(self) -> str:
        return f"influx {redact_url(self.url)}"


Config = InfluxConfig  # the settings class of the sink type, as the registry looks it up


def build(context: SinkContext, name: str, config: InfluxConfig) -> list[Sink]:
    """The InfluxDB sink of the ``sinks`` entry ``name``."""
    return [InfluxSink(config, name)]


def connect_problem(name: str, config: InfluxConfig) -> str | None:
    """``check-config --connect``: GET ``<url>/ping`` (InfluxDB and VictoriaMetrics answer it)
    with the token; None when it answers, else one line with the key path and the fix."""
    import base64
    import urllib.error
    import urllib.parse
    import urllib.request

    from slewguard.service.preflight import network_problem

    parts = urllib.parse.urlsplit(config.url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/ping",
                                   "", ""))
    shown, key = redact_url(config.url), f"sinks.{name}"
    headers = {}
    if config.token is not None:
        headers["Authorization"] = f"Token {config.token.get_secret_value()}"
    elif parts.username:  # user:password@ in the URL: send it as basic auth
        login = f"{urllib.parse.unquote(parts.username)}:" \
                f"{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(login.encode()).decode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=config.timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return (f"{key}.token: {shown} refused the token (HTTP {exc.code}): fix {key}.token "
                    f"(SLEWGUARD_SINKS__{name.upper()}__TOKEN)")
        if exc.code >= 500:
            return (f"{key}.url: {shown}/ping answered HTTP {exc.code}: the database is not "
                    "healthy; check its log")
    except urllib.error.URLError as exc:
        reason = exc.reason if isinstance(exc.reason, OSError) else OSError(str(exc.reason))
        return network_problem(key, shown, reason)
    except OSError as exc:
        return network_problem(key, shown, exc)
    return None


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
        >>> InfluxSink(InfluxConfig(url="http://127.0.0.1:1"), "tsdb").name
        'tsdb'
    """

    def __init__(self, config: InfluxConfig, name: str = "influx") -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.config, self.name = config, name
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
            raise classify_status(exc.status, _body(exc), self.name) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            detail = redact_urls(f"{self.config.url}: {exc}")  # the URL may hold a password
            raise RetryableSinkError("connection", detail) from exc

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._write.close()
        self._client.close()


def classify_status(status: int | None, body: str = "",
                    name: str = "influx") -> RetryableSinkError | PermanentSinkError:
    """The sink error for an HTTP error status from the write API of sink ``name``.

    Example:
        >>> type(classify_status(503)).__name__, classify_status(400, "bad field").reason
        ('RetryableSinkError', 'http_400')
    """
    reason = f"http_{status}" if status else "http_error"
    message = f"InfluxDB answered {status}: {body[:300]}".rstrip(": ")
    if status in PERMANENT_STATUS:
        return PermanentSinkError(reason, message)
    if status in (401, 403, 404):
        message += (f" (check sinks.{name}.token, org and bucket: results wait in the outbox "
                    "meanwhile)")
    return RetryableSinkError(reason, message)


def _body(exc: ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return str(body or exc.reason or "")
