"""FaultClassifier: feature text in, fault-class probabilities out; training, saving, loading.

Real texts come from ``datasets.to_texts(split.train)`` and a pretrained family ("minilm");
a tiny random model on four hand-written texts shows the calls.

Example:
    >>> texts = ["outer 6 7 6", "outer 0 0 0", "outer 7 6 7", "outer 1 0 0"]
    >>> labels = ["outer_race", "healthy", "outer_race", "healthy"]
    >>> clf, history = train_classifier(texts, labels, texts, labels, family="tiny-bert",
    ...                                 epochs=1, lr=1e-3, show_progress=False)
    >>> clf.classes, len(history)
    (['healthy', 'outer_race'], 1)
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as model_dir:
    ...     clf.save(model_dir)
    ...     print(load(model_dir).classes)
    ['healthy', 'outer_race']
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from slewguard.models import backbones
from slewguard.models import card as model_card
from slewguard.models.families import FAMILIES
from slewguard.models.scoring import evaluate
from slewguard.models.train import Batch, fit


class FaultClassifier:
    """A sequence-classification language model over textify texts.

    Example:
        >>> bb = backbones.build("tiny-bert", num_labels=4)
        >>> clf = FaultClassifier(bb.model, bb.tokenizer,
        ...                       ["healthy", "inner_race", "outer_race", "cage"], "t1")
        >>> clf.predict_proba(["outer 6 7 6 inner 5 2 0 kurt 0"]).shape
        (1, 4)
    """

    runtime = "torch"  # runtimes.RUNTIMES key
    model_dir: Path | None = None  # set by load(): where card.json and ood.json are

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 classes: Sequence[str], template_version: str, card: dict | None = None,
                 max_length: int = 256) -> None:
        if model.config.num_labels != len(classes):
            raise ValueError(f"classes={list(classes)} has {len(classes)} names but the model has "
                             f"{model.config.num_labels} outputs; pass one name per output")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.classes = list(classes)
        self.template_version = template_version
        self.card = dict(card or {})
        config = model.config  # learned position tables crash past their length: clamp
        positions = getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", max_length)
        self.max_length = min(max_length, positions)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, texts: Sequence[str]) -> Batch:
        """Tokenize ``texts`` into one padded batch on the model's device."""
        if isinstance(texts, str):
            raise ValueError("texts must be a list of strings, got one string; wrap it: [text]")
        enc = self.tokenizer(list(texts), padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Class probabilities, float32 (B, C), rows sum to 1, columns in ``classes`` order.

        Example:
            >>> bb = backbones.build("tiny-bert", num_labels=2)  # random, over textify's words
            >>> clf = FaultClassifier(bb.model, bb.tokenizer, ["healthy", "outer_race"], "t1")
            >>> proba = clf.predict_proba(["outer 6 7 6", "outer 0 0 0"])
            >>> proba.shape, proba.dtype, bool(np.allclose(proba.sum(axis=1), 1.0))
            ((2, 2), dtype('float32'), True)
        """
        self.model.eval()
        out = np.zeros((len(texts), len(self.classes)), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                logits = self.model(**self.encode(texts[start:start + batch_size])).logits
                out[start:start + len(logits)] = logits.float().softmax(-1).cpu().numpy()
        return out

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[str]:
        """The most probable class name per text."""
        return [self.classes[i] for i in self.predict_proba(texts, batch_size).argmax(axis=1)]

    def save(self, path: Path | str) -> None:
        """Write weights (safetensors), tokenizer, ``card.json`` and ``README.md`` into ``path``.

        Example:
            >>> bb = backbones.build("tiny-bert", num_labels=2)  # random, over textify's words
            >>> clf = FaultClassifier(bb.model, bb.tokenizer, ["healthy", "outer_race"], "t1")
            >>> import tempfile
            >>> with tempfile.TemporaryDirectory() as model_dir:
            ...     clf.save(model_dir)
            ...     saved = {p.name for p in Path(model_dir).iterdir()}
            >>> {"card.json", "README.md", "model.safetensors", "tokenizer.json"} <= saved
            True
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if importlib.util.find_spec(backbones.EXPORT_MODULE) is not None:
            from slewguard.models import export  # pruned layers may differ in width

            export.save_pruned(self.model, path)
        else:
            self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        card = model_card.ModelCard.model_validate({
            "family": self.model.config.model_type, "base_model": "unknown", **self.card,
            "classes": self.classes, "template_version": self.template_version})
        card.parameters["total"] = count_parameters(self.model)  # pruning changes it
        model_card.write(card, path)
        self.card = card.model_dump()


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters (shared tensors, e.g. tied embeddings, counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def current_template_version() -> str:
    """The textify template version this slewguard writes."""
    from slewguard.signal import textify

    return textify.TEMPLATE_VERSION


DTYPES = ("float32", "bfloat16", "float16")  # torch dtype names load() casts to


def load(path: Path | str, template_version: str | None = None,
         device: str = "cpu", dtype: str = "float32",
         card: model_card.ModelCard | None = None) -> FaultClassifier:
    """Load a classifier written by ``FaultClassifier.save`` (dense or pruned) into torch.

    ``slewguard.models.load`` picks the runtime (ONNX Runtime or this one, ``runtimes``) and
    passes the ``card`` it has already read and checked.

    Refuses a directory without a card, a card whose textify template differs from
    ``template_version`` (default: this slewguard's), and architectures slewguard cannot run.
    ``dtype`` casts the weights for inference (a name from ``DTYPES``): bfloat16 runs the
    shipped model in less CPU time, same predictions, where the CPU has AVX-512 BF16
    (docs/benchmarks.md, bfloat16, has the measurement).

    Example:
        >>> bb = backbones.build("tiny-bert", num_labels=2)  # random, over textify's words
        >>> clf = FaultClassifier(bb.model, bb.tokenizer, ["healthy", "outer_race"], "t1")
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as model_dir:
        ...     clf.save(model_dir)
        ...     again = load(model_dir, dtype="bfloat16")
        >>> again.classes, again.model.dtype, again.card["family"]
        (['healthy', 'outer_race'], torch.bfloat16, 'bert')
    """
    path = Path(path)
    card = card or model_card.read_checked(path, template_version)
    check_architecture(path, card)
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported: pass one of {sorted(DTYPES)}")
    model = backbones.load_weights(path).to(device=device, dtype=getattr(torch, dtype)).eval()
    tokenizer = backbones.load_tokenizer(path)
    clf = FaultClassifier(model, tokenizer, card.classes, card.template_version,
                          card.model_dump(), max_length=int(card.training.get("max_length", 256)))
    clf.model_dir = path
    return clf


def check_architecture(path: Path, card: model_card.ModelCard) -> None:
    """ValueError unless the card's family and config.json's model_type are supported."""
    backbones.check_family(card.family)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{path} has a card but no config.json: the weights are missing; "
                         "save the model again")
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type not in FAMILIES:
        raise ValueError(f"model at {path} is a {model_type!r} architecture; slewguard runs "
                         f"{', '.join(FAMILIES)}")


class TrainSettings(BaseModel):
    """How ``train_classifier`` builds and fine-tunes a backbone."""

    model_config = ConfigDict(extra="forbid")
    family: str = Field("tiny-bert", description="a backbones.SUPPORTED_FAMILIES name")
    epochs: int = Field(3, ge=1, description="passes over the training texts")
    lr: float = Field(5e-5, gt=0, description="AdamW peak learning rate (linear decay)")
    batch_size: int = Field(16, ge=1, description="texts per optimiser step")
    seed: int = Field(0, description="seed of head initialisation and shuffling")
    device: Literal["cpu", "cuda"] = Field("cpu", description="where to train")
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="weights dtype")
    max_length: int = Field(256, ge=8, description="tokens per text after truncation")
    source: str | None = Field(None, description="local model directory instead of the default")
    sizes: dict[str, int] = Field(default_factory=dict,
                                  description="config overrides for gpt2/qwen2/tiny-*: n_layer=6")
    trim_vocabulary: bool = Field(False, description="first cut the embedding table to the "
                                  "tokens of textify's closed vocabulary and the training "
                                  "texts (prune.vocab: logits unchanged, fine-tuning faster)")
    show_progress: bool = Field(True, description="progress bar on a terminal, one line per "
                                "epoch")

    @field_validator("family")
    @classmethod
    def _known_family(cls, family: str) -> str:
        backbones.check_family(family)
        return family


def class_order(labels: Sequence[str]) -> list[str]:
    """Classes present in ``labels``, canonical fault order first, unknown names sorted after.

    Example:
        >>> class_order(["outer_race", "healthy", "outer_race"])
        ['healthy', 'outer_race']
    """
    canonical = ("healthy", "inner_race", "outer_race", "rolling_element", "cage", "combined")
    rank = {name: i for i, name in enumerate(canonical)}
    return sorted(set(labels), key=lambda name: (rank.get(name, len(rank)), name))


def make_batches(clf: FaultClassifier, texts: Sequence[str], labels: Sequence[str],
                 batch_size: int, seed: int) -> list[Batch]:
    """Shuffle once with ``seed``, tokenize, and cut into padded batches with ``labels`` tensors."""
    index = {name: i for i, name in enumerate(clf.classes)}
    unknown = sorted(set(labels) - index.keys())
    if unknown:
        raise ValueError(f"labels {unknown} are not in classes={clf.classes}; "
                         "pass classes that cover every label")
    order = np.random.default_rng(seed).permutation(len(texts))
    batches = []
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = clf.encode([texts[i] for i in chunk])
        batch["labels"] = torch.tensor([index[labels[i]] for i in chunk], device=clf.device)
        batches.append(batch)
    return batches


def train_classifier(train_texts: Sequence[str], train_labels: Sequence[str],
                     test_texts: Sequence[str], test_labels: Sequence[str],
                     settings: TrainSettings | None = None, *, classes: Sequence[str] | None = None,
                     vocabulary: Sequence[str] | None = None, template_version: str | None = None,
                     **overrides) -> tuple[FaultClassifier, list[dict[str, float]]]:
    """Fine-tune a ``settings.family`` backbone on texts; returns the classifier and its history.

    ``overrides`` are TrainSettings fields (family=..., epochs=...). The history holds one record
    per epoch with ``train_loss``, ``test_accuracy`` and ``train_seconds``; ``clf.card`` holds
    the final metrics.

    Example:
        >>> texts, labels = ["outer 6 7 6", "outer 0 0 0"], ["outer_race", "healthy"]
        >>> clf, history = train_classifier(texts, labels, texts, labels, family="tiny-gpt2",
        ...                                 epochs=1, show_progress=False)
        >>> sorted(history[0]), sorted(clf.card["metrics"]["accuracy"])
        (['epoch', 'test_accuracy', 'train_loss', 'train_seconds'], ['test', 'train'])
    """
    settings = (settings or TrainSettings()).model_copy(update=overrides)
    settings = TrainSettings.model_validate(settings.model_dump())
    if not len(test_texts):
        raise ValueError("test_texts is empty: the test side measures every epoch; split off "
                         "some texts for it")
    if len(train_texts) != len(train_labels) or len(test_texts) != len(test_labels):
        raise ValueError(f"texts and labels differ in length (train {len(train_texts)} vs "
                         f"{len(train_labels)}, test {len(test_texts)} vs {len(test_labels)})")
    classes = list(classes) if classes is not None else class_order([*train_labels, *test_labels])
    torch.manual_seed(settings.seed)
    backbone = backbones.build(
        settings.family, len(classes), vocabulary=vocabulary, sizes=settings.sizes,
        source=Path(settings.source) if settings.source else None,
        dtype=getattr(torch, settings.dtype))
    if settings.trim_vocabulary:
        trim_backbone(backbone, train_texts)
    backbone.model.to(settings.device)
    version = current_template_version() if template_version is None else template_version
    clf = FaultClassifier(backbone.model, backbone.tokenizer, classes, version,
                          max_length=settings.max_length)
    batches = make_batches(clf, train_texts, train_labels, settings.batch_size, settings.seed)

    clock = [time.perf_counter()]

    def on_epoch(_: torch.nn.Module) -> dict[str, float]:
        train_seconds = time.perf_counter() - clock[0]  # the epoch's steps, not the evaluation
        accuracy = evaluate(clf, test_texts, test_labels)["accuracy"]
        clock[0] = time.perf_counter()
        return {"test_accuracy": accuracy, "train_seconds": round(train_seconds, 3)}

    history = fit(clf.model, batches, settings.epochs, settings.lr, evaluate=on_epoch,
                  description=f"train {settings.family}", show_progress=settings.show_progress,
                  seed=settings.seed, epoch_lines=settings.show_progress)
    clf.card = _card(clf, backbone, settings, history, (train_texts, train_labels),
                     (test_texts, test_labels)).model_dump()
    return clf, history


def trim_backbone(backbone: backbones.Backbone, texts: Sequence[str]) -> tuple[int, int]:
    """Cut ``backbone``'s vocabulary (in place) to the tokens of ``texts`` and of every word
    textify can emit; returns the embedding rows before and after.

    Example:
        >>> bb = backbones.build("tiny-bert", num_labels=2, vocabulary=["outer", "1", "unused"])
        >>> trim_backbone(bb, ["outer 1"])  # 4 special tokens + the words texts and textify use
        (7, 6)
    """
    from slewguard.models.prune.vocab import trim_vocabulary
    from slewguard.signal.textify import vocabulary

    before = int(backbone.model.get_input_embeddings().weight.shape[0])
    # the whole template vocabulary, so words the training texts lack still map to real ids
    backbone.model, backbone.tokenizer = trim_vocabulary(
        backbone.model, backbone.tokenizer, [*texts, " ".join(vocabulary())])
    after = int(backbone.model.get_input_embeddings().weight.shape[0])
    if after < before:
        backbone.base_model += (f" (vocabulary trimmed to textify's words: {before:,} -> "
                                f"{after} rows)")
    return before, after


def _card(clf: FaultClassifier, backbone: backbones.Backbone, settings: TrainSettings,
          history: list[dict[str, float]], train: tuple, test: tuple) -> model_card.ModelCard:
    on_train, on_test = evaluate(clf, *train), evaluate(clf, *test)
    trainable = sum(p.numel() for p in clf.model.parameters() if p.requires_grad)
    return model_card.ModelCard(
        classes=clf.classes, template_version=clf.template_version, family=settings.family,
        base_model=backbone.base_model, seed=settings.seed,
        parameters={"total": count_parameters(clf.model), "trainable": trainable},
        training=settings.model_dump(exclude={"show_progress", "source"}, exclude_none=True),
        metrics=model_card.Metrics(
            accuracy={"train": on_train["accuracy"], "test": on_test["accuracy"]},
            per_class=on_test["per_class"], confusion=on_test["confusion"], history=history))
