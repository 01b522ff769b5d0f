"""Each bearing's healthy baseline, learned at commissioning and kept across restarts.

The first ``n_windows`` windows of a bearing (site/asset/bearing/sensor) give its level (median
RMS and kurtosis, ``evidence.Baseline``); from then on every window's level is read relative to
it, which is how a plant's condition monitoring compares a machine with itself. Windows during
commissioning carry no level delta (``has_baseline`` 0). A bearing whose commissioning windows
mostly show a strong race line is marked ``suspect`` (it may have been faulty already) and its
deltas are not used; its defect lines are still read.

The state is one JSON file, written atomically on every change; ``slewguard baseline reset``
edits it and the daemon picks the change up at the next window of that bearing (after a sensor
swap or a repair, relearn).

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> store = BaselineStore(pathlib.Path(tempfile.mkdtemp()) / "b.json", n_windows=2)
    >>> rng = np.random.default_rng(0)
    >>> [store.observe("s/a/b/x", rng.normal(size=500), 3.0) is None for _ in range(3)]
    [True, True, False]
    >>> round(store.get("s/a/b/x").rms, 1)
    1.0
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np

from slewguard.signal.evidence import Baseline, level

FORMAT = "slewguard-baselines"
VERSION = 1


class BaselineStore:
    """Commissioning baselines by bearing key; ``path`` None keeps them in memory only."""

    def __init__(self, path: Path | None, n_windows: int) -> None:
        if n_windows < 1:
            raise ValueError(f"evidence.baseline_windows={n_windows} must be >= 1")
        self.path = None if path is None else Path(path)
        self.n_windows = int(n_windows)
        self._lock = threading.Lock()
        self._mtime = None
        self._state: dict[str, dict] = {}
        self._load()

    def observe(self, key: str, window: np.ndarray, line_db: float) -> Baseline | None:
        """The bearing's baseline for this window: None while it is still learning (this window
        is then one of its commissioning windows)."""
        return self.observe_level(key, level(window), line_db)

    def observe_level(self, key: str, levels: tuple[float, float],
                      line_db: float) -> Baseline | None:
        """:meth:`observe` from the window's ``evidence.level`` (rms, excess kurtosis)."""
        with self._lock:
            self._reload_if_changed()
            entry = self._state.setdefault(key, {"levels": [], "lines_db": [], "baseline": None})
            if entry["baseline"] is not None:
                return Baseline(**entry["baseline"])
            entry["levels"].append(list(levels))
            entry["lines_db"].append(float(line_db))
            if len(entry["levels"]) >= self.n_windows:
                b = Baseline.from_levels([tuple(v) for v in entry["levels"]], entry["lines_db"])
                entry["baseline"] = {"rms": b.rms, "kurtosis": b.kurtosis,
                                     "n_windows": b.n_windows, "suspect": b.suspect}
            self._save()
            return None

    def get(self, key: str) -> Baseline | None:
        """The learned baseline of ``key``, None while learning or unknown."""
        with self._lock:
            entry = self._state.get(key)
            return None if not entry or entry["baseline"] is None else Baseline(**entry["baseline"])

    def entries(self) -> dict[str, dict]:
        """Every bearing's state: windows seen while learning and the baseline, if any."""
        with self._lock:
            self._reload_if_changed()
            return {k: {"learning_windows": len(v["levels"]), "baseline": v["baseline"]}
                    for k, v in sorted(self._state.items())}

    def reset(self, key: str | None = None) -> list[str]:
        """Forget one bearing's baseline (``key``) or all; returns the keys forgotten. The next
        windows of those bearings are commissioning windows again."""
        with self._lock:
            self._reload_if_changed()
            if key is not None and key not in self._state:
                raise ValueError(f"no baseline for bearing {key!r}: known ones are "
                                 f"{sorted(self._state)}")
            gone = [key] if key is not None else sorted(self._state)
            for k in gone:
                del self._state[k]
            self._save()
            return gone

    def _load(self) -> None:
        if self.path is None or not self.path.is_file():
            return
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.path}: not a readable baselines file ({exc}); move it away "
                             "or set evidence.baseline_path to another file") from None
        if doc.get("format") != FORMAT or doc.get("version") != VERSION:
            raise ValueError(f"{self.path}: format {doc.get('format')!r} version "
                             f"{doc.get('version')!r}, expected {FORMAT!r} {VERSION}: move it "
                             "away or set evidence.baseline_path to another file")
        self._state = doc["bearings"]
        self._mtime = self.path.stat().st_mtime_ns

    def _reload_if_changed(self) -> None:
        """Re-read the file when another process (``slewguard baseline reset``) changed it:
        one ``stat`` per window."""
        if self.path is None:
            return
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime is None and self._mtime is not None:
            self._state, self._mtime = {}, None  # the file was deleted: relearn everything
        elif mtime is not None and mtime != self._mtime:
            self._state = {}
            self._load()

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"format": FORMAT, "version": VERSION,
                                   "bearings": self._state}, indent=1) + "\n")
        os.replace(tmp, self.path)
        self._mtime = self.path.stat().st_mtime_ns
