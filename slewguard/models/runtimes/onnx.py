"""The ONNX Runtime runtime: ``model.onnx`` plus the model's own ``tokenizer.json``, no torch.

Float32 on the CPU only (what the exported graph computes): ``problem`` refuses other settings
and a directory without ``model.onnx``, for ``ModelConfig`` (the settings) and
``runtimes.choose_runtime`` (both; the default picks this runtime where it has no problem).

Tokenization uses the ``tokenizers`` library directly, configured as transformers' fast tokenizer
configures it per call (``padding=True, truncation=True, max_length=...``): the same ids, type
ids and attention masks (tests/models/test_runtimes.py checks them against transformers). The
graph's inputs are fed by name; their names follow ``forward``'s argument order (onnx_export).

Example:
    >>> clf = load(Path("slewguard/models/default"), read(Path("slewguard/models/default")))
    ... # doctest: +SKIP
    >>> clf.predict(["outer 6 7 6 inner 5 2 0 kurt 0"])                  # doctest: +SKIP
    ['outer_race']
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slewguard.models.card import ModelCard

ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
DEFAULT_MAX_LENGTH = 256  # FaultClassifier's, for cards without training.max_length


def problem(model_dir: Path | None, device: str = "cpu", dtype: str = "float32") -> str | None:
    """Why this runtime cannot run the model in ``model_dir`` on ``device`` in ``dtype``, or
    None: float32 on the CPU only (``auto`` is the CPU here), and ``model.onnx`` in the
    directory (not looked for when ``model_dir`` is None).

    Example:
        >>> problem(None, "cuda").split(":")[0]
        "runtime='onnx' runs float32 on the CPU, not dtype='float32' on device='cuda'"
        >>> problem(None, "auto") is None
        True
    """
    if dtype != "float32" or device not in ("cpu", "auto"):
        return (f"runtime='onnx' runs float32 on the CPU, not dtype={dtype!r} on "
                f"device={device!r}: set model.dtype float32 and model.device cpu, or "
                "model.runtime torch")
    if model_dir is not None and not (Path(model_dir) / ONNX_FILE).is_file():
        return (f"runtime='onnx' needs {Path(model_dir) / ONNX_FILE}: write it with "
                f"`slewguard export {model_dir}`, or set model.runtime torch")
    return None


def missing_files(model_dir: Path) -> list[str]:
    """The files ``load`` reads that ``model_dir`` lacks: the graph and the fast tokenizer.

    Example:
        >>> missing_files(Path("no/such/dir"))
        ['model.onnx', 'tokenizer.json']
    """
    return [name for name in (ONNX_FILE, TOKENIZER_FILE) if not (Path(model_dir) / name).is_file()]


def _token(value: Any) -> str | None:
    """A special token from tokenizer_config.json: a string, or an AddedToken dict."""
    return value.get("content") if isinstance(value, dict) else value


def _required(file: Path, fix: str) -> Path:
    if not file.is_file():
        raise ValueError(f"{file} does not exist: {fix}, or set model.runtime torch")
    return file


def _json_beside(path: Path, name: str) -> dict:
    """A model directory's optional JSON file, {} when absent."""
    file = Path(path) / name
    return json.loads(file.read_text()) if file.is_file() else {}


def max_length_of(card: ModelCard, config: dict) -> int:
    """Tokens per text: the card's training max_length, clamped to the position table.

    Example:
        >>> card = ModelCard(classes=["a", "b"], template_version="t1", family="x",
        ...                  base_model="y", training={"max_length": 64})
        >>> max_length_of(card, {"max_position_embeddings": 32})
        32
    """
    wanted = int(card.training.get("max_length", DEFAULT_MAX_LENGTH))
    positions = config.get("max_position_embeddings") or config.get("n_positions") or wanted
    return min(wanted, int(positions))


def load_tokenizer(path: Path, max_length: int) -> Any:
    """``tokenizers.Tokenizer`` of ``path/tokenizer.json`` padding to the batch's longest text
    and truncating at ``max_length``, on the sides tokenizer_config.json names.

    Example:
        >>> from slewguard.models.shipped import shipped_model_dir
        >>> load_tokenizer(shipped_model_dir("default"), 64).encode("rms 4").ids[0]  # [CLS]
        2
    """
    from tokenizers import Tokenizer

    file = _required(Path(path) / TOKENIZER_FILE,
                     "the ONNX runtime needs the model's fast tokenizer; save the model again")
    config = _json_beside(path, "tokenizer_config.json")
    tokenizer = Tokenizer.from_file(str(file))
    pad = _token(config.get("pad_token"))
    pad_id = tokenizer.token_to_id(pad) if pad is not None else None
    if pad_id is None:
        raise ValueError(f"{Path(path) / 'tokenizer_config.json'} names pad_token={pad!r}, "
                         f"which {file} does not hold: save the tokenizer with a pad token")
    tokenizer.enable_truncation(max_length, strategy="longest_first",
                                direction=config.get("truncation_side", "right"))
    tokenizer.enable_padding(direction=config.get("padding_side", "right"), pad_id=pad_id,
                             pad_type_id=0, pad_token=pad)
    return tokenizer


# Basic graph optimisations only (constant folding, redundant nodes): the extended fusions
# (attention, skip-layer-norm, GELU) make the shipped pruned BERT, with its 3-5 heads per layer,
# slower (docs/edge-runtime.md has the measurement).
GRAPH_OPTIMIZATION = "ORT_ENABLE_BASIC"


def session_options(threads: int | None) -> Any:
    """ORT session options: ``GRAPH_OPTIMIZATION``, ``threads`` intra-op threads (None: ORT's
    default), one inter-op thread (the graph is one chain)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION)
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    return options


class OnnxClassifier:
    """Feature texts in, class probabilities out, through an ONNX Runtime session.

    Example:
        >>> clf = load(Path("slewguard/models/default"), card)   # doctest: +SKIP
        >>> clf.predict_proba(["outer 6 7 6"]).sum()             # doctest: +SKIP
        1.0
    """

    runtime = "onnx"
    FEEDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}

    def __init__(self, session: Any, tokenizer: Any, card: ModelCard, model_dir: Path) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.card = card.model_dump()
        self.classes = list(card.classes)
        self.template_version = card.template_version
        self.model_dir = Path(model_dir)
        self.input_names = [i.name for i in session.get_inputs()]
        unknown = [n for n in self.input_names if n not in self.FEEDS]
        if unknown:
            raise ValueError(f"{model_dir / ONNX_FILE} takes inputs {unknown} the tokenizer does "
                             f"not give (only {', '.join(self.FEEDS)}): export it again with "
                             f"`slewguard export {model_dir}`")
        outputs = session.get_outputs()
        if outputs[0].shape[-1] != len(self.classes):
            raise ValueError(f"{model_dir / ONNX_FILE} has {outputs[0].shape[-1]} outputs but "
                             f"the card names {len(self.classes)} classes: export it again")

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Padded int64 (B, T) arrays by graph input name."""
        if isinstance(texts, str):
            raise ValueError("texts must be a list of strings, got one string; wrap it: [text]")
        encodings = self.tokenizer.encode_batch(list(texts))
        return {name: np.array([getattr(e, self.FEEDS[name]) for e in encodings], dtype=np.int64)
                for name in self.input_names}

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logits float32 (B, C) of one batch."""
        return self.session.run(None, self.encode(texts))[0]

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Class probabilities, float32 (B, C), rows sum to 1, columns in ``classes`` order."""
        out = np.zeros((len(texts), len(self.classes)), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            z = self.logits(texts[start:start + batch_size]).astype(np.float32)
            z = np.exp(z - z.max(axis=1, keepdims=True))
            out[start:start + len(z)] = z / z.sum(axis=1, keepdims=True)
        return out

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[str]:
        """The most probable class name per text."""
        return [self.classes[i] for i in self.predict_proba(texts, batch_size).argmax(axis=1)]


def load(path: Path, card: ModelCard, device: str = "cpu", dtype: str = "float32",
         threads: int | None = None) -> OnnxClassifier:
    """An ``OnnxClassifier`` over ``path/model.onnx`` on the CPU (float32 only).

    Example:
        >>> load(Path("out/model"), card, threads=1).runtime   # doctest: +SKIP
        'onnx'
    """
    import onnxruntime as ort

    why = problem(path, device, dtype)
    if why is not None:
        raise ValueError(why)
    file = Path(path) / ONNX_FILE
    config = _json_beside(path, "config.json")
    session = ort.InferenceSession(str(file), session_options(threads),
                                   providers=["CPUExecutionProvider"])
    return OnnxClassifier(session, load_tokenizer(path, max_length_of(card, config)), card, path)
