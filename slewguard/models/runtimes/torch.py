"""The torch runtime: the transformers model itself (any device and dtype it supports).

Example:
    >>> clf = load(Path("slewguard/models/default"), read(Path("slewguard/models/default")))
    ... # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slewguard.models.card import ModelCard


def load(path: Path, card: ModelCard, device: str = "cpu", dtype: str = "float32",
         threads: int | None = None) -> Any:
    """A ``classifier.FaultClassifier`` on ``device`` in ``dtype``; ``threads`` is unused here
    (torch's are process-wide: the daemon sets ``model.torch_threads``).

    Example:
        >>> load(Path("out/model"), card, dtype="bfloat16").runtime   # doctest: +SKIP
        'torch'
    """
    from slewguard.models.classifier import load as load_torch

    return load_torch(path, device=device, dtype=dtype, card=card)
