"""The model card: what a saved classifier is, what it was trained on, and how well it did.

Written beside the weights as ``card.json`` (read back by ``slewguard.models.load``) and a short
``README.md`` for people.

Example:
    >>> card = ModelCard(classes=["healthy", "outer_race"], template_version="t1",
    ...                  family="tiny-bert", base_model="random init (bert config)")
    >>> card.metrics.accuracy
    {}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from slewguard import __version__

CARD_FILE = "card.json"
README_FILE = "README.md"


class DataSource(BaseModel):
    """One dataset directory the model was trained on."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="dataset directory as given on the command line")
    name: str = Field("", description="Split.name (e.g. cwru faults-3class, simulated)")
    note: str = Field("", description="Split.note: provenance and protocol")
    n_train: int = Field(0, description="training windows")
    n_test: int = Field(0, description="test windows")


class Metrics(BaseModel):
    """Accuracy per split (``train``, ``test``) and per class (recall) on the test side."""

    model_config = ConfigDict(extra="forbid")
    accuracy: dict[str, float] = Field(default_factory=dict, description="split -> accuracy 0..1")
    per_class: dict[str, float] = Field(default_factory=dict, description="class -> test recall")
    confusion: list[list[int]] = Field(
        default_factory=list, description="test confusion matrix, rows true, columns predicted")
    history: list[dict[str, float]] = Field(
        default_factory=list, description="one record per epoch")


class ModelCard(BaseModel):
    """Everything needed to trust, reproduce and safely load a trained fault classifier."""

    # Later stages (pruning, export) add their own sections: keep them rather than reject them.
    model_config = ConfigDict(extra="allow")
    classes: list[str] = Field(min_length=2, description="output index -> fault class")
    template_version: str = Field(description="textify TEMPLATE_VERSION the inputs were written in")
    features: str = Field("tree", description="features.extract band search the inputs were "
                          "computed with (features.METHODS); cards older than the field: tree")
    family: str = Field(description="backbone family (minilm, gpt2, llama, tiny-bert, ...)")
    base_model: str = Field(description="pretrained weights or 'random init' and their origin")
    data: list[DataSource] = Field(default_factory=list, description="training data provenance")
    metrics: Metrics = Field(default_factory=Metrics)
    command: str = Field("", description="the exact command line that produced the model "
                         "('' when trained through the Python API)")
    seed: int = Field(0, description="random seed of initialisation and shuffling")
    parameters: dict[str, int] = Field(default_factory=dict,
                                       description="total / trainable parameter counts")
    training: dict[str, str | int | float | dict[str, int]] = Field(
        default_factory=dict, description="epochs, lr, batch size, device, dtype, sizes")
    slewguard_version: str = Field(__version__, description="slewguard version that wrote it")
    created_utc: str = Field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"),
        description="when the card was written, ISO 8601 UTC")

    @field_validator("features")
    @classmethod
    def _known_method(cls, value: str) -> str:
        from slewguard.signal.features import check_method

        return check_method(value, "features", "upgrade slewguard or retrain the model")


def features_method(card: Mapping[str, Any] | None) -> str:
    """The band search a model's inputs are computed with: its card's ``features``, or the
    default for cards (and hand-built classifiers) without one.

    Example:
        >>> features_method({}), features_method({"features": "stft"})
        ('tree', 'stft')
    """
    return (card or {}).get("features", ModelCard.model_fields["features"].default)


def write(card: ModelCard, path: Path) -> None:
    """Write ``card.json`` and ``README.md`` into the directory ``path``.

    Example:
        >>> import tempfile
        >>> card = ModelCard(classes=["healthy", "inner_race"], template_version="t1",
        ...                  family="tiny-bert", base_model="random init (bert config)")
        >>> with tempfile.TemporaryDirectory() as model_dir:
        ...     write(card, Path(model_dir))
        ...     print(sorted(p.name for p in Path(model_dir).iterdir()))
        ['README.md', 'card.json']
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / CARD_FILE).write_text(card.model_dump_json(indent=2) + "\n")
    (path / README_FILE).write_text(readme(card))


def read(path: Path) -> ModelCard:
    """Read the card of the model directory ``path``; ValueError when missing or malformed.

    Example:
        >>> import tempfile
        >>> card = ModelCard(classes=["healthy", "inner_race"], template_version="t1",
        ...                  family="tiny-bert", base_model="random init (bert config)")
        >>> with tempfile.TemporaryDirectory() as model_dir:
        ...     write(card, Path(model_dir))
        ...     print(read(Path(model_dir)).classes)
        ['healthy', 'inner_race']
    """
    file = Path(path) / CARD_FILE
    if not file.is_file():
        raise ValueError(f"path={str(path)!r} has no {CARD_FILE}: not a slewguard model directory; "
                         "train one with `slewguard train` or pass the directory it wrote")
    try:
        return ModelCard.model_validate(json.loads(file.read_text()))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ValueError(f"{file} is not a valid model card ({exc}); retrain or restore it") \
            from exc


def read_checked(path: Path, template_version: str | None = None) -> ModelCard:
    """The card of model directory ``path``, its template checked (``check_template``);
    ValueError naming the path when it is not a directory or the card does not fit.

    Example:
        >>> read_checked(Path("no-such-dir"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: path='no-such-dir' is not a directory; ...
    """
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"path={str(path)!r} is not a directory; pass a model directory "
                         "written by `slewguard train`")
    card = read(path)
    check_template(card, path, template_version)
    return card


def check_template(card: ModelCard, path: Path, expected: str | None = None) -> None:
    """ValueError unless ``card`` was trained on textify template ``expected`` (default: any
    template this slewguard writes, ``signal.templates``): a model fed texts of another
    template scores garbage.

    Example:
        >>> check_template(ModelCard(classes=["a", "b"], template_version="t1", family="x",
        ...                          base_model="y"), Path("m"), "t1")
    """
    from slewguard.signal import templates

    speaks = templates.known() if expected is None else (expected,)
    if card.template_version not in speaks:
        raise ValueError(
            f"model at {path} was trained on textify template {card.template_version!r}, this "
            f"slewguard speaks {' and '.join(map(repr, speaks))}: retrain it with `slewguard "
            f"train`, or install slewguard version {card.slewguard_version} to use it")


def readme(card: ModelCard) -> str:
    """A short markdown summary of ``card`` for people browsing the model directory."""
    m = card.metrics
    lines = [
        f"# slewguard fault classifier ({card.family})", "",
        f"- base model: {card.base_model}",
        f"- classes: {', '.join(card.classes)}",
        f"- textify template: {card.template_version}; features: {card.features}; "
        f"slewguard {card.slewguard_version}",
        f"- parameters: {card.parameters.get('total', 0):,}",
        f"- seed: {card.seed}; created {card.created_utc}",
        f"- command: `{card.command}`" if card.command else "- command: (Python API)",
        "", "## Data", "",
        *(f"- `{d.path}`: {d.name} ({d.n_train} train / {d.n_test} test windows) {d.note}"
          for d in card.data),
        "", "## Accuracy", "",
        *(f"- {split}: {acc:.2%}" for split, acc in m.accuracy.items()),
        *(f"- test recall {name}: {acc:.2%}" for name, acc in m.per_class.items()),
        "", "Load with `slewguard.models.load(path)`; `card.json` holds the full record.", "",
    ]
    return "\n".join(lines)
