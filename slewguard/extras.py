"""Optional extras: which import needs which ``pip install 'slewguard[EXTRA]'``.

The base package serves (``serve``, ``check-config``, ``predict --runtime onnx``, ``bearings``)
with the shipped ONNX models; simulation and the dataset loaders (scipy), training, pruning,
export and plots live in extras (pyproject.toml). A command that needs a missing extra stops
with one line (``cli.main`` turns :class:`MissingExtraError` and a ``ModuleNotFoundError`` of a
module below into it), not with a traceback.

Example:
    >>> extra_for("torch.nn"), extra_for("scipy.signal"), extra_for("numpy")
    ('training', 'signal', None)
    >>> message("train", "training")
    "slewguard train needs the training extra: pip install 'slewguard[training]'"
"""

from __future__ import annotations

import importlib.util

# Top-level module -> the extra that installs it (pyproject.toml [project.optional-dependencies]).
EXTRA_OF_MODULE = {
    "scipy": "signal",
    "torch": "training",
    "transformers": "training",
    "peft": "training",
    "safetensors": "training",
    "onnx": "training",
    "onnxscript": "training",
    "matplotlib": "plots",
    "amqtt": "demo",
    "sklearn": "baselines",
    "gguf": "llm",
    "accelerate": "llm",
    "mkdocs": "docs",
}
# What each extra must make importable, checked before a command starts its work.
MODULES_OF_EXTRA = {
    "signal": ("scipy",),
    "training": ("torch", "transformers", "peft", "safetensors"),
    "export": ("torch", "transformers", "onnx", "onnxscript"),  # part of the training extra
    "plots": ("matplotlib",),
    "demo": ("amqtt",),
    "llm": ("gguf", "accelerate"),
}
INSTALL_EXTRA = {"export": "training"}  # check names that install with another extra


class MissingExtraError(ImportError):
    """A command needs an optional extra that is not installed; ``str()`` is the one line."""

    def __init__(self, command: str, extra: str) -> None:
        self.command, self.extra = command, INSTALL_EXTRA.get(extra, extra)
        super().__init__(message(command, self.extra))


def message(command: str, extra: str) -> str:
    """The one line a command prints when ``extra`` is missing."""
    return f"slewguard {command} needs the {extra} extra: {install_command(extra)}"


def install_command(extra: str) -> str:
    """The pip command that installs ``extra``."""
    return f"pip install 'slewguard[{extra}]'"


def extra_for(module: str | None) -> str | None:
    """The extra that installs ``module`` (a dotted name), or None for a base dependency."""
    return EXTRA_OF_MODULE.get((module or "").split(".")[0])


def available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it).

    Example:
        >>> available("json"), available("no_such_module_here")
        (True, False)
    """
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it, or a half-imported module
        return False


def require(extra: str, command: str) -> None:
    """Raise :class:`MissingExtraError` unless every module of ``extra`` is importable.

    Example:
        >>> require("plots", "dataset plot")  # doctest: +SKIP
    """
    if not all(available(m) for m in MODULES_OF_EXTRA[extra]):
        raise MissingExtraError(command, extra)
