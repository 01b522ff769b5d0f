"""Model runtimes, one module per runtime, found by key: ``onnx`` (ONNX Runtime) and ``torch``.

``RUNTIMES`` maps each key to its module (the import path, or the module itself for a runtime
registered from outside the package with ``register``). A runtime module holds its own pieces:

- ``problem(model_dir, device, dtype) -> str | None``: why the runtime cannot run the model in
  ``model_dir`` on ``device`` in ``dtype`` (one line naming the settings and the fix), or None.
  With ``model_dir=None`` only the settings are checked: ``ModelConfig`` calls it that way
  when it validates ``model.runtime``, before any model directory is read.
- ``missing_files(model_dir) -> list[str]``: the files its ``load`` reads that ``model_dir``
  lacks (``check-config`` names them without loading any weights).
- ``load(path, card, device, dtype, threads) -> Classifier``: ``threads`` is the runtime's
  intra-op thread count where it has one per model (``model.onnx_threads``), else unused.

The default (``runtime=None``) is the first key, in ``RUNTIMES`` order, whose ``problem`` is
None: ``onnx`` where the model directory holds ``model.onnx`` and the request is float32 on the
CPU (what the ONNX graph computes), else ``torch``, which takes any directory and settings. A
registered runtime comes after both, so it runs only where it is named.

The trust layer (temperature, OOD, kinematic thresholds) reads only a classifier's ``card``
and ``model_dir``, so it applies the same way to every runtime. Nothing here imports torch or
transformers, and a runtime's module is imported only when its key is looked up.

Example:
    >>> choose_runtime(Path("no/such/dir"))
    'torch'
    >>> runtime_module("tflite")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: runtime='tflite' is not a model runtime: pick one of onnx, torch ...
    >>> clf = load("slewguard/models/default", runtime="onnx")   # doctest: +SKIP
    >>> clf.predict_proba(["outer 6 7 6 inner 5 2 0 kurt 0"]).shape  # doctest: +SKIP
    (1, 4)
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

from slewguard.models import card as model_card

if TYPE_CHECKING:
    import numpy as np

# runtime key -> the module with its problem(), missing_files() and load() (or that module
# itself, for a runtime registered from outside the package)
RUNTIMES: dict[str, str | ModuleType] = {
    "onnx": "slewguard.models.runtimes.onnx",
    "torch": "slewguard.models.runtimes.torch",
}


class Classifier(Protocol):
    """What every runtime's ``load`` returns and the daemon serves (service.inference_stage,
    service.trust): ``predict_proba`` gives float32 (B, C) probabilities, rows summing to 1,
    columns in ``classes`` order; ``card`` is the model card as a dict; ``model_dir`` the
    directory the model was loaded from (card.json, ood.json: what the trust layer reads), None
    for one never saved; ``runtime`` its key in ``RUNTIMES``."""

    classes: list[str]
    card: dict
    model_dir: Path | None
    runtime: str

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...


def register(key: str, module: str | ModuleType) -> None:
    """Add the runtime ``key``: ``module`` (its import path, or the module) holds the runtime's
    ``problem``, ``missing_files`` and ``load``. Register before the config is loaded:
    ``model.runtime`` is looked up when the config is validated.

    Example:
        >>> register("onnx", "slewguard.models.runtimes.onnx")
        Traceback (most recent call last):
        ...
        ValueError: runtime 'onnx' is already registered (onnx, torch)
    """
    if key in RUNTIMES:
        raise ValueError(f"runtime {key!r} is already registered ({', '.join(RUNTIMES)})")
    RUNTIMES[key] = module


def runtime_module(key: str) -> ModuleType:
    """The module of runtime ``key`` (imported on first use); ValueError for an unknown key.

    Example:
        >>> runtime_module("onnx").__name__
        'slewguard.models.runtimes.onnx'
    """
    if key not in RUNTIMES:
        raise ValueError(f"runtime={key!r} is not a model runtime: pick one of "
                         f"{', '.join(RUNTIMES)} (model.runtime / --runtime)")
    entry = RUNTIMES[key]
    return importlib.import_module(entry) if isinstance(entry, str) else entry


def choose_runtime(path: Path | str, runtime: str | None = None, device: str = "cpu",
                   dtype: str = "float32") -> str:
    """The runtime key for a model directory: ``runtime`` when given (checked: its module's
    ``problem`` is raised as a ValueError), else the default (the first that has none).

    Example:
        >>> choose_runtime("m", "torch")
        'torch'
    """
    if runtime is None:
        return next(key for key in RUNTIMES
                    if runtime_module(key).problem(Path(path), device, dtype) is None)
    problem = runtime_module(runtime).problem(Path(path), device, dtype)
    if problem is not None:
        raise ValueError(problem)
    return runtime


def load(path: Path | str, template_version: str | None = None, device: str = "cpu",
         dtype: str = "float32", runtime: str | None = None,
         threads: int | None = None) -> Classifier:
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
    return runtime_module(key).load(path, card, device=device, dtype=dtype, threads=threads)
