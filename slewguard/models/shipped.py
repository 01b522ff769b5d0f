"""The models shipped in the package, by name, and the one call that loads them.

"default" (tree band search, the most accurate) and "fast" (stft band search: cheaper
features, for daemons that must take more windows per core; docs/models.md, the shipped
models). ``slewguard build-default-model`` (``models.default``) builds either.

Example:
    >>> shipped_model_dir("fast").name
    'fast'
    >>> load_default(name="fast").card["features"]   # doctest: +SKIP
    'stft'
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slewguard.models.runtimes import Classifier

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"
FAST_MODEL_DIR = Path(__file__).resolve().parent / "fast"
SHIPPED_MODELS = {"default": DEFAULT_MODEL_DIR, "fast": FAST_MODEL_DIR}


def default_model_dir() -> Path:
    """The directory of the model shipped with slewguard (``slewguard/models/default``).

    Example:
        >>> default_model_dir().name
        'default'
    """
    return shipped_model_dir("default")


def shipped_model_dir(name: str = "default") -> Path:
    """The directory of a model shipped with slewguard, by name (``SHIPPED_MODELS``).

    Example:
        >>> shipped_model_dir("fast").name
        'fast'
    """
    if name not in SHIPPED_MODELS:
        raise ValueError(f"shipped model {name!r} does not exist: pick one of "
                         f"{', '.join(SHIPPED_MODELS)}, or pass a model directory")
    return SHIPPED_MODELS[name]


def load_default(device: str = "cpu", dtype: str = "float32", name: str = "default",
                 runtime: str | None = None, threads: int | None = None) -> Classifier:
    """A shipped classifier (``slewguard.models.load`` on ``shipped_model_dir(name)``); the
    runtime as ``runtimes.choose_runtime`` picks it (onnx for float32 on the CPU).

    Example:
        >>> load_default().classes   # doctest: +SKIP
        ['healthy', 'inner_race', 'outer_race', 'rolling_element']
    """
    from slewguard.models.runtimes import load

    path = shipped_model_dir(name)
    if not (path / "card.json").is_file():
        flags = "" if name == "default" else (f" with --out {path} (docs/models.md: the "
                                              "shipped models)")
        raise ValueError(f"no {name} model in {path}: build it with "
                         f"`slewguard build-default-model`{flags}")
    return load(path, device=device, dtype=dtype, runtime=runtime, threads=threads)
