"""What every section shares: the strict base model and the error ``load_config`` raises."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from slewguard.service.redact import redact_url


class StrictModel(BaseModel):
    """A section: unknown keys are refused and a loaded configuration is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(ValueError):
    """Invalid configuration; ``errors`` holds one "key.path: message" line per problem."""

    def __init__(self, errors: list[str], source: str = "") -> None:
        self.errors = errors
        where = f" in {source}" if source else ""
        super().__init__(f"invalid configuration{where}:\n" + "\n".join(f"  - {e}" for e in errors))


def check_http_url(url: str) -> None:
    """An endpoint's URL must be http(s); the error shows it with credentials masked.

    Example:
        >>> check_http_url("ftp://u:pw@host/x")
        Traceback (most recent call last):
        ...
        ValueError: url='ftp://***@host/x' must start with http:// or https://
    """
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"url={redact_url(url)!r} must start with http:// or https://")


def check_backoff(retry_min_s: float, retry_max_s: float) -> None:
    """The first backoff must not exceed the longest."""
    if retry_min_s > retry_max_s:
        raise ValueError(f"retry_min_s={retry_min_s} must not exceed retry_max_s={retry_max_s}")
