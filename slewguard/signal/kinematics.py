"""Bearing kinematics: defect frequencies from geometry and shaft speed.

fr = rpm / 60 and k = (Bd / Pd) cos(alpha):
BPFO = N/2 fr (1 - k), BPFI = N/2 fr (1 + k), FTF = fr/2 (1 - k), BSF = Pd/(2 Bd) fr (1 - k^2).
A spalled rolling element strikes both races once per spin, so its envelope line is 2 x BSF.
Presets live in ``bearings.csv`` beside this module (geometry is data, not code).

Example:
    >>> g = preset("cwru-6205")
    >>> round(g.orders().bpfo_hz, 4)
    3.5848
    >>> round(g.frequencies(rpm=1797).bpfi_hz, 1)
    162.2
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

PRESETS_CSV = Path(__file__).with_name("bearings.csv")

# Fault class -> the defect line its envelope spectrum shows.
FAULT_LINE = {
    "inner_race": "bpfi_hz",
    "outer_race": "bpfo_hz",
    "rolling_element": "bsf2_hz",
    "cage": "ftf_hz",
}


@dataclass(frozen=True)
class DefectFrequencies:
    """Characteristic defect frequencies in Hz (or in orders when shaft_hz == 1)."""

    shaft_hz: float
    ftf_hz: float
    bpfo_hz: float
    bpfi_hz: float
    bsf_hz: float

    @property
    def bsf2_hz(self) -> float:
        """Rolling-element defect line: the element hits both races each spin."""
        return 2.0 * self.bsf_hz

    def as_dict(self) -> dict[str, float]:
        """All lines by name, including ``bsf2_hz``."""
        return {**asdict(self), "bsf2_hz": self.bsf2_hz}

    def harmonics(self, line: str, count: int = 3) -> list[float]:
        """The first ``count`` harmonics of one line, e.g. ``harmonics("bpfo_hz", 3)``."""
        base = self.as_dict()[line]
        return [base * (i + 1) for i in range(count)]


@dataclass(frozen=True)
class BearingGeometry:
    """Rolling-bearing geometry. Raises ValueError for a physically impossible bearing."""

    name: str
    pitch_diameter_mm: float
    element_diameter_mm: float
    n_elements: int
    contact_angle_deg: float = 0.0
    kind: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if not self.pitch_diameter_mm > 0:
            raise ValueError(
                f"pitch_diameter_mm={self.pitch_diameter_mm} must be > 0: give the diameter of "
                "the circle through the rolling-element centres in mm"
            )
        if not 0 < self.element_diameter_mm < self.pitch_diameter_mm:
            raise ValueError(
                f"element_diameter_mm={self.element_diameter_mm} must be > 0 and smaller than "
                f"pitch_diameter_mm={self.pitch_diameter_mm}: check units (both in mm)"
            )
        if int(self.n_elements) != self.n_elements or self.n_elements < 3:
            raise ValueError(f"n_elements={self.n_elements} must be a whole number >= 3")
        max_elements = math.pi * self.pitch_diameter_mm / self.element_diameter_mm
        if self.n_elements > max_elements:
            raise ValueError(
                f"n_elements={self.n_elements} elements of {self.element_diameter_mm} mm do not "
                f"fit on a {self.pitch_diameter_mm} mm pitch circle (at most {int(max_elements)})"
            )
        if not 0 <= self.contact_angle_deg < 90:
            raise ValueError(
                f"contact_angle_deg={self.contact_angle_deg} must be in [0, 90): 0 for deep-groove "
                "ball bearings, about 45 for four-point-contact and crossed-roller slewing rings"
            )

    def orders(self) -> DefectFrequencies:
        """Defect frequencies as multiples of shaft speed (orders)."""
        k = self.element_diameter_mm / self.pitch_diameter_mm * math.cos(
            math.radians(self.contact_angle_deg)
        )
        half_n = self.n_elements / 2.0
        return DefectFrequencies(
            shaft_hz=1.0,
            ftf_hz=0.5 * (1 - k),
            bpfo_hz=half_n * (1 - k),
            bpfi_hz=half_n * (1 + k),
            bsf_hz=self.pitch_diameter_mm / (2 * self.element_diameter_mm) * (1 - k * k),
        )

    def frequencies(self, rpm: float) -> DefectFrequencies:
        """Defect frequencies in Hz at a shaft speed in rpm (the sign of rpm is ignored)."""
        if not math.isfinite(rpm) or rpm == 0:
            raise ValueError(f"rpm={rpm} must be a finite, non-zero shaft speed")
        fr = abs(rpm) / 60.0
        o = self.orders()
        return DefectFrequencies(fr, o.ftf_hz * fr, o.bpfo_hz * fr, o.bpfi_hz * fr, o.bsf_hz * fr)


@cache
def presets() -> dict[str, BearingGeometry]:
    """All bearing presets from ``bearings.csv``, by name."""
    with PRESETS_CSV.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {
        r["name"]: BearingGeometry(
            name=r["name"],
            pitch_diameter_mm=float(r["pitch_diameter_mm"]),
            element_diameter_mm=float(r["element_diameter_mm"]),
            n_elements=int(r["n_elements"]),
            contact_angle_deg=float(r["contact_angle_deg"]),
            kind=r["kind"],
            description=r["description"],
        )
        for r in rows
    }


_REGISTERED: dict[str, BearingGeometry] = {}  # this process's own geometries (``register``)


def register(geometry: BearingGeometry) -> str:
    """Make ``geometry`` a preset of this process under its name (a simulator drawing random
    bearings uses this); a name of ``bearings.csv`` cannot be taken.

    Example:
        >>> register(BearingGeometry("demo-6204", 33.5, 7.9, 8))
        'demo-6204'
        >>> round(preset("demo-6204").orders().bpfo_hz, 2)
        3.06
    """
    if geometry.name in presets():
        raise ValueError(f"bearing name {geometry.name!r} is a preset of bearings.csv: "
                         "pick another")
    _REGISTERED[geometry.name] = geometry
    return geometry.name


def preset(name: str) -> BearingGeometry:
    """Look a preset up by name; an unknown name raises ValueError listing the known ones."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    table = presets()
    if name not in table:
        raise ValueError(f"unknown bearing preset {name!r}: choose one of {sorted(table)}")
    return table[name]
