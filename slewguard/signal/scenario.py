"""What a simulated window is: the fault classes and the pydantic spec that describes a window.

``simulate.simulate`` turns a ``SimulationSpec`` into samples; this module only validates and
describes (defect lines, resonances, the speed profile's peak, the SNR reference power).

Example:
    >>> SimulationSpec(fault="inner_race", rpm=2.0, window_seconds=20.0).n_samples
    100000
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from slewguard.signal.kinematics import BearingGeometry, preset

FAULT_CLASSES: tuple[str, ...] = (
    "healthy",
    "inner_race",
    "outer_race",
    "rolling_element",
    "cage",
    "combined",
)
# Impulse trains per class, by kinematics line name.
FAULT_TRAINS: dict[str, tuple[str, ...]] = {
    "healthy": (),
    "inner_race": ("bpfi_hz",),
    "outer_race": ("bpfo_hz",),
    "rolling_element": ("bsf2_hz",),
    "cage": ("ftf_hz",),
    "combined": ("bpfi_hz", "bpfo_hz"),
}
MIN_IMPACTS = 3
MIN_SAMPLES = 64
SAMPLE_RATE_RANGE_HZ = (1_000.0, 50_000.0)
DEFAULT_RESONANCE_FRACTIONS = (0.12, 0.21, 0.32)  # x sample rate: well inside Nyquist at any rate
# Stop-start cycle: ramp up, run, ramp down, stand still (fractions of the period).
STOP_START_PHASE = (0.0, 0.15, 0.60, 0.75, 1.0)
STOP_START_MEAN = 0.6  # mean of that cycle: peak speed = rpm / 0.6


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ImpactSpec(_Spec):
    """How the impacts of a localised defect scatter."""

    slip_jitter: float = Field(0.015, ge=0, le=0.2, description="timing jitter std, x period")
    slip_fraction: float = Field(0.0, ge=0, lt=0.1, description="mean slip: lines sit this low")
    amplitude_spread: float = Field(0.1, ge=0, le=1, description="impact amplitude std, relative")
    load_zone_depth: float = Field(0.8, ge=0, le=1, description="modulation depth, 0: none")


class ResonanceSpec(_Spec):
    """Structural resonances every impact rings."""

    frequencies_hz: tuple[float, ...] | None = Field(
        None, min_length=1, description="None: 0.12, 0.21, 0.32 x sample_rate_hz"
    )
    gains: tuple[float, ...] | None = Field(
        None, description="relative gain per resonance; None: 1, 0.7, 0.49, ..."
    )
    damping_ratio: float = Field(0.05, gt=0, lt=1, description="zeta of every resonance")


class GearSpec(_Spec):
    """Deterministic background: ring-gear mesh and shaft harmonics."""

    ring_teeth: int = Field(120, ge=1, description="mesh frequency = ring_teeth x shaft rate")
    mesh_amplitude: float = Field(0.3, ge=0, description="first mesh harmonic, x impact peak")
    mesh_harmonics: int = Field(3, ge=1, le=5, description="mesh harmonics k, amplitude / k")
    sideband_depth: float = Field(0.3, ge=0, le=1, description="AM depth at shaft rate")
    shaft_amplitude: float = Field(0.2, ge=0, description="shaft 1x amplitude, x impact peak")
    shaft_harmonics: int = Field(3, ge=1, le=5, description="shaft harmonics k, amplitude / k")


class SimulationSpec(_Spec):
    """Everything that defines a simulated window; invalid combinations raise ValueError.

    Example:
        >>> SimulationSpec(fault="inner_race", rpm=2.0, window_seconds=20.0).n_samples
        100000
    """

    fault: str = Field("healthy", description=f"one of {FAULT_CLASSES}")
    bearing: str = Field("slew-4pc-1000", description="bearing preset name (kinematics.presets)")
    rpm: float = Field(6.0, gt=0, le=6000, description="mean |shaft speed| in rpm")
    sample_rate_hz: float = Field(5000.0, description="1 kHz to 50 kHz")
    window_seconds: float = Field(30.0, gt=0, description="window length in seconds")
    snr_db: float | None = Field(
        10.0, ge=-40, le=100, description="signal power / noise power in dB; None: no noise"
    )
    snr_reference: Literal["impacts", "clean"] = Field(
        "impacts", description="signal power of snr_db: a severity-1 outer-race impact train "
        "(class-independent) or each window's clean signal (impacts + gear mesh + shaft)"
    )
    severity: float = Field(1.0, ge=0, le=100, description="impact amplitude scale; 0: none")
    speed_profile: Literal["constant", "oscillating", "stop_start"] = Field(
        "constant", description="constant, oscillating (sine through zero) or stop_start"
    )
    speed_period_seconds: float = Field(
        10.0, gt=0, description="period of the oscillating or stop-start speed cycle"
    )
    impacts: ImpactSpec = ImpactSpec()
    resonance: ResonanceSpec = ResonanceSpec()
    gear: GearSpec = GearSpec()

    @field_validator("fault")
    @classmethod
    def _known_fault(cls, v: str) -> str:
        if v not in FAULT_CLASSES:
            raise ValueError(f"fault={v!r} is not a fault class: choose one of {FAULT_CLASSES}")
        return v

    @field_validator("bearing")
    @classmethod
    def _known_bearing(cls, v: str) -> str:
        try:
            preset(v)
        except ValueError as exc:
            raise ValueError(f"bearing={v!r}: {exc}") from None
        return v

    @field_validator("sample_rate_hz")
    @classmethod
    def _sample_rate_in_range(cls, v: float) -> float:
        lo, hi = SAMPLE_RATE_RANGE_HZ
        if not lo <= v <= hi:
            raise ValueError(f"sample_rate_hz={v} must be in [{lo:g}, {hi:g}] Hz (1 to 50 kHz)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SimulationSpec:
        self._check_resonances()
        self._check_window()
        gear, silent = self.gear, not FAULT_TRAINS[self.fault] or self.severity == 0
        no_background = not (gear.mesh_amplitude or gear.shaft_amplitude)
        if self.snr_db is not None and self.snr_reference == "clean" and silent and no_background:
            raise ValueError(
                f"snr_db={self.snr_db} has no clean signal to refer to (fault={self.fault!r}, "
                f"severity={self.severity}, gear amplitudes 0): set gear.mesh_amplitude or "
                "gear.shaft_amplitude > 0, or snr_db=None"
            )
        return self

    def _check_resonances(self) -> None:
        nyquist = self.sample_rate_hz / 2
        for f in self.resonances_hz():
            if not 0 < f < nyquist:
                raise ValueError(
                    f"resonance.frequencies_hz contains {f} Hz, outside (0, {nyquist:g}) Hz (the "
                    f"Nyquist band at sample_rate_hz={self.sample_rate_hz:g}): lower it or raise "
                    "the sample rate"
                )
        gains = self.resonance.gains
        if gains is not None and len(gains) != len(self.resonances_hz()):
            raise ValueError(
                f"resonance.gains={gains} needs one gain per resonance "
                f"({len(self.resonances_hz())} resonances)"
            )

    def _check_window(self) -> None:
        if self.n_samples < MIN_SAMPLES:
            raise ValueError(
                f"window_seconds={self.window_seconds} gives {self.n_samples} samples at "
                f"sample_rate_hz={self.sample_rate_hz:g}: use at least {MIN_SAMPLES} samples"
            )
        standstill_s = (1 - STOP_START_PHASE[-2]) * self.speed_period_seconds
        if self.speed_profile == "stop_start" and self.window_seconds <= standstill_s:
            raise ValueError(
                f"window_seconds={self.window_seconds} fits inside the {standstill_s:g} s "
                f"standstill of speed_period_seconds={self.speed_period_seconds}: a window may "
                f"not move at all; use speed_period_seconds < {self.window_seconds / 0.25:g}"
            )
        orders = self.geometry().orders().as_dict()
        for line in FAULT_TRAINS[self.fault]:
            line_hz = orders[line] * self.rpm / 60 * (1 - self.impacts.slip_fraction)
            if self.window_seconds * line_hz < MIN_IMPACTS:
                raise ValueError(
                    f"window_seconds={self.window_seconds} holds only "
                    f"{self.window_seconds * line_hz:.2f} impacts of {line[:-3]} "
                    f"({line_hz:.4g} Hz at rpm={self.rpm}) for fault={self.fault!r}: use "
                    f"window_seconds >= {MIN_IMPACTS / line_hz:.1f} or a higher rpm"
                )

    @property
    def n_samples(self) -> int:
        """Samples per window."""
        return round(self.window_seconds * self.sample_rate_hz)

    def geometry(self) -> BearingGeometry:
        """The bearing preset's geometry."""
        return preset(self.bearing)

    def resonances_hz(self) -> tuple[float, ...]:
        """Resonance frequencies in Hz, defaults resolved against the sample rate."""
        given = self.resonance.frequencies_hz
        return given or tuple(f * self.sample_rate_hz for f in DEFAULT_RESONANCE_FRACTIONS)

    def reference_power(self, h: np.ndarray) -> float:
        """Power of a severity-1 outer-race impact train ringing ``h``: the ``"impacts"`` SNR
        reference, (1 + spread^2) x BPFO x sum(h^2) / fs."""
        bpfo_hz = self.geometry().orders().as_dict()["bpfo_hz"] * self.rpm / 60
        spread = self.impacts.amplitude_spread
        energy = float(np.sum(np.square(h, dtype=np.float64)))
        return (1 + spread**2) * bpfo_hz * energy / self.sample_rate_hz

    def peak_rpm(self) -> float:
        """Highest |shaft speed| the speed profile reaches, in rpm."""
        scale = {"constant": 1.0, "oscillating": math.pi / 2, "stop_start": 1 / STOP_START_MEAN}
        return self.rpm * scale[self.speed_profile]
