"""Model runtimes, one module per runtime, chosen by key: ``onnx`` (ONNX Runtime) or ``torch``.

A runtime module has one function, ``load(path, card, device, dtype, threads)``, returning a
classifier with ``classes``, ``card``, ``model_dir``, ``runtime`` and ``predict_proba(texts)``
(float32 (B, C) probabilities, columns in ``classes`` order). The trust layer (temperature, OOD,
kinematic thresholds) reads only ``card`` and ``model_dir``, so it applies the same way to both.
The default (``runtime=None``) is ``onnx`` where the model directory holds ``model.onnx`` and
the request is float32 on the CPU (what the ONNX graph computes), else ``torch``.

Nothing here imports torch or transformers: only the chosen runtime module does.

Example:
    >>> choose_runtime(Path("no/such/dir"))
    'torch'
    >>> clf = load("slewguard/models/default", runtime="onnx")   # doctest: +SKIP
    >>> clf.predict_proba(["outer 6 7 6 inner 5 2 0 kurt 0"]).shape  # doctest: +SKIP
    (1, 4)
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from slewguard.models import card as model_card

ONNX_FILE = "model.onnx"
RUNTIMES = {"onnx": "slewguard.models.runtimes.onnx", "torch": "slewguard.models.runtimes.torch"}


class Classifier(Protocol):
    """What every runtime returns."""

    classes: list[str]
    card: dict
    runtime: str

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...


def choose_runtime(path: Path | str, runtime: str | None = None, device: str = "cpu",
                   dtype: str = "float32") -> str:
    """The runtime key for a model directory: ``runtime`` when given (checked), else the default.

    Example:
        >>> choose_runtime("m", "torch")
        'torch'
    """
    if runtime is None:
        onnx_fits = dtype == "float32" and device in ("cpu", "auto")
        return "onnx" if onnx_fits and (Path(path) / ONNX_FILE).is_file() else "torch"
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime={runtime!r} is not a model runtime: pick one of "
                         f"{', '.join(RUNTIMES)} (model.runtime / --runtime)")
    if runtime == "onnx":
        if dtype != "float32" or device == "cuda":
            raise ValueError(f"runtime='onnx' runs float32 on the CPU, not dtype={dtype!r} on "
                             f"device={device!r}: set model.dtype float32 and model.device cpu, "
                             "or model.runtime torch")
        if not (Path(path) / ONNX_FILE).is_file():
            raise ValueError(f"runtime='onnx' needs {Path(path) / ONNX_FILE}: write it with "
                             f"`slewguard export {path}`, or set model.runtime torch")
    return runtime


def load(path: Path | str, template_version: str | None = None, device: str = "cpu",
         dtype: str = "float32", runtime: str | None = None, threads: int | None = None) -> Any:
    """Load a saved classifier with the chosen runtime (``choose_runtime``).

    Refuses a directory without a card and a card whose textify template differs from
    ``template_version`` (default: this slewguard's). ``threads``: ONNX Runtime intra-op threads
    (None: its default); torch's threads are process-wide (``torch.set_num_threads``).

    Example:
        >>> load("slewguard/models/default", runtime="torch").runtime   # doctest: +SKIP
        'torch'
    """
    path = Path(path)
    card = model_card.read_checked(path, template_version)
    key = choose_runtime(path, runtime, device, dtype)
    module = importlib.import_module(RUNTIMES[key])
    return module.load(path, card, device=device, dtype=dtype, threads=threads)
