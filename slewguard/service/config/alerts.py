"""The ``alerts`` section of the daemon's configuration: voting, escalation and webhooks.

Example:
    >>> AlertsConfig(k=2, n=3).min_confidence
    0.6
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from slewguard.service.config.base import StrictModel, check_backoff, check_http_url
from slewguard.service.redact import redact_url

ALERT_STATES = ("healthy", "inner_race", "outer_race", "rolling_element", "cage", "combined",
                "unknown", "sensor_fault")


class WebhookConfig(StrictModel):
    """One HTTP endpoint that receives alert events (a ticketing system, Alertmanager-style)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Short name; a metric label and "
                      "the Alertmanager 'receiver'.")
    url: str = Field(description="Endpoint, http:// or https://; user info in it "
                     "(https://user:password@host/..., percent-encoded) is sent as HTTP Basic "
                     "auth and masked wherever the URL is shown.")
    format: Literal["generic", "alertmanager", "template"] = Field(
        "generic", description="Body shape: slewguard's generic JSON, Alertmanager webhook v4, "
        "or a Jinja2 template (Jira/ServiceNow style).")
    template: str | None = Field(None, description="Template text (format 'template'); sees "
                                 "`event` (the generic JSON as a dict) and the `tojson` filter.")
    template_file: Path | None = Field(None, description="File holding the template instead of "
                                       "'template'.")
    headers: dict[str, str] = Field({}, description="Extra HTTP headers, e.g. Authorization; "
                                    "Content-Type defaults to application/json.")
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout per attempt in seconds.")
    retry_min_s: float = Field(1.0, gt=0, description="First backoff after a failed attempt.")
    retry_max_s: float = Field(300.0, gt=0, description="Longest backoff between attempts.")

    @model_validator(mode="after")
    def _url_template_backoff(self) -> WebhookConfig:
        check_http_url(self.url)
        if "@" in urlsplit(self.url).netloc and "authorization" in map(str.lower, self.headers):
            raise ValueError(f"url={redact_url(self.url)!r} has user info (sent as Basic auth) "
                             "and headers sets Authorization too: keep one of them")
        given = (self.template is not None) + (self.template_file is not None)
        if self.format == "template" and given != 1:
            raise ValueError("format 'template' needs exactly one of template or template_file")
        if self.format != "template" and given:
            raise ValueError(f"template/template_file only apply to format 'template', not "
                             f"{self.format!r}")
        if self.template_file is not None and not Path(self.template_file).is_file():
            raise ValueError(f"template_file={str(self.template_file)!r} does not exist")
        check_backoff(self.retry_min_s, self.retry_max_s)
        return self

    def template_text(self) -> str | None:
        """The template source (inline or read from ``template_file``), None for other formats."""
        if self.template_file is not None:
            return Path(self.template_file).read_text(encoding="utf-8")
        return self.template


class AlertsConfig(StrictModel):
    """Per-bearing state voting and the alert hooks (webhooks) it drives."""

    enabled: bool = Field(True, description="Vote bearing states, export them as gauges and "
                          "send webhooks; false turns all of it off.")
    k: int = Field(3, ge=1, description="Votes (of the last n windows) a class needs to become "
                   "the bearing's state, unless enter_k overrides it for that class.")
    n: int = Field(5, ge=1, le=1000, description="Voting window: the last n windows per bearing.")
    enter_k: dict[str, int] = Field({}, description="Per-class votes needed to enter a state "
                                    "(default k), e.g. {healthy: 4, outer_race: 3}.")
    exit_k: dict[str, int] = Field({}, description="Per-class votes below which a state is left "
                                   "(default k - 1, at least 1): hysteresis, exit_k <= enter_k.")
    min_confidence: float = Field(0.6, ge=0, le=1, description="A window whose confidence is "
                                  "lower votes 'unknown'.")
    kinematic_min_db: float = Field(3.0, description="A fault verdict votes 'unknown' unless "
                                    "the envelope level (h1, dB over the noise floor) at that "
                                    "fault's defect frequency reaches this.")
    escalate_envelope_db: list[float] = Field([15.0, 25.0], description="Envelope levels (dB) "
                                              "at the fault line that raise the severity to "
                                              "major and critical.")
    escalate_confidence: list[float] = Field([0.9, 0.97], description="Mean vote confidences "
                                             "that raise the severity to major and critical.")
    escalate_after_windows: int = Field(1000, ge=1, description="Windows in a fault state after "
                                        "which the severity goes up one more level.")
    dashboard_url: str = Field("http://localhost:3000", description="Grafana base URL for the "
                               "dashboard link in each event.")
    queue_path: Path | None = Field(None, description="SQLite file of the durable webhook queue "
                                    "and bearing states; None puts it next to the outbox "
                                    "(<outbox>-alerts.sqlite3).")
    webhooks: list[WebhookConfig] = Field([], description="Where events go; empty: gauges only.")

    @model_validator(mode="after")
    def _thresholds(self) -> AlertsConfig:
        if self.k > self.n:
            raise ValueError(f"k={self.k} must not exceed n={self.n}")
        for what, table in (("enter_k", self.enter_k), ("exit_k", self.exit_k)):
            for state, votes in table.items():
                if state not in ALERT_STATES:
                    raise ValueError(f"{what}.{state}: unknown state (allowed: "
                                     f"{', '.join(ALERT_STATES)})")
                if not 1 <= votes <= self.n:
                    raise ValueError(f"{what}.{state}={votes} must be in 1..n={self.n}")
        for state in ALERT_STATES:
            if self.exit_votes(state) > self.enter_votes(state):
                raise ValueError(f"exit_k.{state}={self.exit_votes(state)} must not exceed "
                                 f"enter_k={self.enter_votes(state)} (hysteresis)")
        names = [w.name for w in self.webhooks]
        if len(set(names)) != len(names):
            raise ValueError(f"webhook names {names} must be unique")
        return self

    def enter_votes(self, state: str) -> int:
        """Votes of the last n a state needs to be entered."""
        return self.enter_k.get(state, self.k)

    def exit_votes(self, state: str) -> int:
        """A state is held while it keeps at least this many votes of the last n."""
        return self.exit_k.get(state, max(1, self.enter_votes(state) - 1))
