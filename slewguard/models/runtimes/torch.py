"""The torch runtime: the transformers model itself (any device and dtype it supports).

It runs any saved model directory with any settings (``problem`` is always None), so it is the
default wherever the onnx runtime has a problem. torch itself is imported only by ``load``.

Example:
    >>> clf = load(Path("slewguard/models/default"), read(Path("slewguard/models/default")))
    ... # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from slewguard.models.card import ModelCard

if TYPE_CHECKING:
    from slewguard.models.classifier import FaultClassifier


def problem(model_dir: Path | None, device: str = "cpu", dtype: str = "float32") -> str | None:
    """None: torch takes every device and dtype the config allows, and ``load`` itself names
    what a directory lacks (``missing_files`` lists it for ``check-config``).

    Example:
        >>> problem(None, "cuda", "bfloat16") is None
        True
    """
    return None


def missing_files(model_dir: Path) -> list[str]:
    """The files ``load`` reads that ``model_dir`` lacks: config.json and the weights
    (``*.safetensors``, or a PyTorch ``*.bin``), named ``model.safetensors`` when absent.

    Example:
        >>> missing_files(Path("no/such/dir"))
        ['config.json', 'model.safetensors']
    """
    model_dir = Path(model_dir)
    missing = [] if (model_dir / "config.json").is_file() else ["config.json"]
    if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("*.bin")):
        missing.append("model.safetensors")
    return missing


def load(path: Path, card: ModelCard, device: str = "cpu", dtype: str = "float32",
         threads: int | None = None) -> FaultClassifier:
    """A ``classifier.FaultClassifier`` on ``device`` (``auto``: cuda where torch sees one,
    else cpu) in ``dtype``; ``threads`` is unused here (torch's are process-wide: the daemon
    sets ``model.torch_threads``).

    Example:
        >>> load(Path("out/model"), card, dtype="bfloat16").runtime   # doctest: +SKIP
        'torch'
    """
    from slewguard.models.classifier import load as load_torch

    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return load_torch(path, device=device, dtype=dtype, card=card)
