"""The knobs of the default-model build (``slewguard build-default-model``) in one validated
record, with the full-build and ``--quick`` defaults.

``BuildConfig`` is what every stage of the build reads (``build_data``, ``build_evidence``,
``default``); ``CLASSES`` are the shipped models' output classes and ``WEIGHTS_DTYPES`` the
dtypes a build may store its weights in.

Example:
    >>> config = BuildConfig.for_mode(quick=True, seed=3)
    >>> config.family, config.seed, config.classes == CLASSES
    ('tiny-bert', 3, True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from slewguard.signal.features import check_method

WEIGHTS_DTYPES = ("float32", "bfloat16")  # how a build stores its weights
CLASSES = ("healthy", "inner_race", "outer_race", "rolling_element")


class BuildConfig(BaseModel):
    """Every knob of the default-model build; ``BuildConfig.for_mode(quick)`` gives the defaults."""

    model_config = ConfigDict(extra="forbid")
    family: str = Field("minilm", description="backbone (backbones.SUPPORTED_FAMILIES)")
    classes: tuple[str, ...] = Field(CLASSES, min_length=2, description="output classes, in "
                                     "order (other data sets, e.g. bench_baselines' CWRU 3-class)")
    seed: int = Field(0, ge=0, description="seed of simulation, training and pruning")
    target_ratio: float = Field(8.0, gt=1.0, description="body compression dense/pruned")
    windows_per_class: int = Field(100, ge=4, description="simulated windows per class")
    window_seconds: float = Field(20.0, gt=0, description="simulated window length (publisher: 20)")
    sample_rate_hz: float = Field(5000.0, description="simulated sample rate (publisher: 5000)")
    snr_db: tuple[float, float] = Field((-10.0, 10.0), description="simulated SNR range in dB "
                                        "(impact SNR, scenario.SimulationSpec.snr_reference)")
    severity: tuple[float, float] = Field((0.5, 2.0), description="simulated fault severity range")
    calib_fraction: float = Field(0.2, gt=0, lt=0.5, description="share of train held out for "
                                  "validation, temperature and OOD threshold")
    fleet_windows_per_class: int = Field(12, ge=1, description="windows per class simulated as "
                                         "the demo fleet sends them (6 rpm, 0 dB, severity 2)")
    cwru_root: Path | None = Field(None, description="CWRU directory (None: the default place)")
    cwru_protocol: str = Field("paper-4class", description="cwru.load_cwru protocol")
    cwru_windows_per_class: int | None = Field(45, description="cap per class and side "
                                               "(None: every window)")
    epochs: int = Field(6, ge=1, description="dense fine-tuning epochs")
    lr: float = Field(1.5e-4, gt=0, description="dense fine-tuning learning rate")
    batch_size: int = Field(32, ge=1, description="texts per step")
    epoch_scale: float = Field(0.2, gt=0, description="cascade recovery epochs x this "
                               "(paper 10/10/30)")
    stage_shares: tuple[float, float, float] = Field(
        (0.5, 0.2, 0.3), description="cascade removal budget shares layers/heads/channels, "
        "pinned so that a change of the cascade's defaults does not silently change this model")
    criterion: str = Field("taylor", description="cascade head and channel importance, pinned "
                           "like the stage shares (taylor measured ahead of wanda, cascade.py)")
    distill_weight: float = Field(0.0, ge=0, le=1, description="cascade recovery's "
                                  "distillation from the dense model, pinned like the stage "
                                  "shares (the shipped build has none)")
    rounds: int = Field(1, ge=1, description="cascade head + channel rounds, pinned like the "
                        "stage shares (both shipped models were built with the paper's one)")
    finetune_epochs: int = Field(8, ge=0, description="full fine-tuning of the pruned model "
                                 "after the cascade (cheap at 8x; recovers what LoRA left)")
    finetune_lr: float = Field(2e-4, gt=0, description="learning rate of that fine-tuning")
    threads: int = Field(1, ge=1, description="torch CPU threads; 1 is faster than 2 on a "
                         "shared 2-core machine (OpenMP threads spin under load)")
    features: str = Field("tree", description="features.extract band search (features.METHODS)"
                          ": tree; stft is cheaper per window but its pruned models score "
                          "lower (docs/benchmarks.md, tree or stft band search)")
    weights_dtype: str = Field("float32", description="dtype the weights are stored in "
                               "(WEIGHTS_DTYPES): bfloat16 halves the file; accuracies and the "
                               "temperature are measured on the rounded weights")
    template: str = Field("t1", description="text template (signal.templates): t1 reads the "
                          "features of simulated slewing windows and CWRU; t3 reads the "
                          "rig-invariant evidence of the randomised simulator, CWRU and UESTC")
    sim_machines: int = Field(80, ge=2, description="t3: randomised simulated machines")
    sim_windows_per_class: int = Field(3, ge=1, description="t3: windows per class and machine")
    uestc_root: Path | None = Field(None, description="t3: UESTC directory (None: the "
                                    "default place)")
    transfer_results: Path | None = Field(None, description="bench_transfer.py's transfer.json: "
                                          "its leave-one-rig-out rows for this recipe go into "
                                          "the card")
    show_progress: bool = Field(True, description="rich progress bars")

    @field_validator("template")
    @classmethod
    def _known_template(cls, value: str) -> str:
        from slewguard.signal.templates import template

        template(value)
        return value

    @field_validator("features")
    @classmethod
    def _known_method(cls, value: str) -> str:
        return check_method(value, "features")

    @field_validator("weights_dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        if value not in WEIGHTS_DTYPES:
            raise ValueError(f"weights_dtype={value!r} is not a storage dtype of this build: "
                             f"pick one of {', '.join(WEIGHTS_DTYPES)}")
        return value

    @classmethod
    def for_mode(cls, quick: bool, **overrides: Any) -> BuildConfig:
        """Full-build defaults, or tiny sizes that run in seconds when ``quick``.

        Example:
            >>> BuildConfig.for_mode(quick=True).family
            'tiny-bert'
        """
        small = dict(family="tiny-bert", target_ratio=2.0, windows_per_class=6,
                     window_seconds=8.0, fleet_windows_per_class=2, cwru_windows_per_class=4,
                     epochs=2, lr=1e-3, epoch_scale=0.1, finetune_epochs=1,
                     sim_machines=4, sim_windows_per_class=1) if quick else {}
        return cls(**{**small, **{k: v for k, v in overrides.items() if v is not None}})
