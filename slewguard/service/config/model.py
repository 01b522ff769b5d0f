"""The ``model`` and ``inference`` sections: which classifier runs where, and its batching.

``model.runtime`` is a key of ``models.runtimes.RUNTIMES``, looked up when the section is
validated, and the runtime's own ``problem`` checks the device and dtype asked of it.

Example:
    >>> InferenceConfig(max_batch=8).queue_size
    256
    >>> ModelConfig(runtime="tflite")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig
    runtime
      Value error, not a model runtime: pick one of onnx, torch [type=value_error, ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from slewguard.models import runtimes
from slewguard.models.shipped import SHIPPED_MODELS
from slewguard.service.config.base import StrictModel

# One name per model shipped in the package (models/shipped.py): a new one needs no edit here.
ShippedName = Literal[tuple(SHIPPED_MODELS)]


class ModelConfig(StrictModel):
    """Which classifier to load and where to run it."""

    path: Path | None = Field(None, description="Saved FaultClassifier directory; None loads the "
                              "shipped model named by `shipped`.")
    shipped: ShippedName = Field("default", description="Shipped model when "
                                                "`path` is unset: default (pruned 8.7x) or fast "
                                                "(13.8x, bfloat16 file); both read the evidence "
                                                "stage's text (docs/models.md).")
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="Torch device.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Weights "
                                                             "dtype for inference; bfloat16 "
                                                             "pays where the CPU has AVX-512 "
                                                             "BF16 or AMX.")
    # a key of models.runtimes.RUNTIMES, looked up when validated (``_known_runtime``): a
    # runtime added with ``runtimes.register`` before the config is loaded is accepted
    runtime: str | None = Field(None, description="Model runtime, a key of models.runtimes: "
                                "onnx (ONNX Runtime, no torch in the process), torch, or one "
                                "added with `runtimes.register`; None: onnx where the model "
                                "directory has model.onnx and dtype is float32 on the CPU, "
                                "else torch.")
    onnx_threads: int | None = Field(1, ge=1, le=256, description="ONNX Runtime intra-op "
                                     "threads; None keeps its default (one per core). 1 for "
                                     "the reason torch_threads gives.")
    torch_threads: int | None = Field(1, ge=1, le=256, description="torch intra-op threads "
                                      "of the inference thread, set at start; None keeps torch's "
                                      "default (one per core). Default 1: inference overlaps the "
                                      "features thread, and torch's default pool spins against "
                                      "it on a small box (docs/benchmarks.md).")

    @field_validator("runtime", mode="before")
    @classmethod
    def _known_runtime(cls, runtime: Any) -> Any:
        """None or a key of the registry (``load_config`` adds the key path and the value)."""
        if runtime is not None and (not isinstance(runtime, str)
                                    or runtime not in runtimes.RUNTIMES):
            raise ValueError(f"not a model runtime: pick one of {', '.join(runtimes.RUNTIMES)}")
        return runtime

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if self.path is not None and self.shipped != "default":
            raise ValueError(f"path={str(self.path)!r} and shipped={self.shipped!r} both name a "
                             "model: set one of them")
        if self.runtime is not None:  # the runtime's own check of the settings, no directory
            problem = runtimes.runtime_module(self.runtime).problem(None, self.device,
                                                                    self.dtype)
            if problem is not None:
                raise ValueError(problem)
        return self


class InferenceConfig(StrictModel):
    """Micro-batching between the MQTT queue and the model."""

    max_batch: int = Field(16, ge=1, le=1024, description="Most windows per forward pass.")
    max_wait_ms: float = Field(50.0, ge=0, le=10_000, description="Longest wait for a batch to "
                               "fill, in milliseconds.")
    queue_size: int = Field(256, ge=1, description="Decoded windows waiting for inference; when "
                            "full, MQTT acks stop and the broker holds the rest.")
    queue_bytes: int = Field(64 * 2**20, ge=1, description="Payload bytes waiting for "
                             "inference, the queue's bound in memory: past it, MQTT acks stop "
                             "as when queue_size is reached. One message larger than this still "
                             "passes when the queue is empty.")
    signal_threads: int | None = Field(None, ge=1, le=256, description="Threads that compute "
                                       "the windows of a batch (checks, features); None: one "
                                       "per core. Set 1 when several daemons share the cores.")

    @model_validator(mode="after")
    def _queue_holds_batch(self) -> InferenceConfig:
        if self.queue_size < self.max_batch:
            raise ValueError(f"queue_size={self.queue_size} must be >= max_batch="
                             f"{self.max_batch} or batches never fill")
        return self
