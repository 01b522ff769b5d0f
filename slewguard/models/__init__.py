"""Language-model fault classifier, cascaded multi-granularity pruning and export.

The classifier API is loaded on first use, so ``slewguard --help`` does not import torch;
``load`` picks a runtime (``runtimes``: ONNX Runtime where the directory has model.onnx, else
torch) and imports only that one.

Example:
    >>> from slewguard import models
    >>> clf = models.load("out/model")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "FaultClassifier": "slewguard.models.classifier",
    "TrainSettings": "slewguard.models.classifier",
    "load": "slewguard.models.runtimes",
    "train_classifier": "slewguard.models.classifier",
    "ModelCard": "slewguard.models.card",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'slewguard.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
