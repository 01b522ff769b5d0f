"""What every section shares: the strict base model and the error ``load_config`` raises."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A section: unknown keys are refused and a loaded configuration is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(ValueError):
    """Invalid configuration; ``errors`` holds one "key.path: message" line per problem."""

    def __init__(self, errors: list[str], source: str = "") -> None:
        self.errors = errors
        where = f" in {source}" if source else ""
        super().__init__(f"invalid configuration{where}:\n" + "\n".join(f"  - {e}" for e in errors))
