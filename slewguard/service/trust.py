"""The daemon's trust layer: data-quality checks, calibration, "unknown", evidence text.

Per micro-batch, around the model (see pipeline.py):

1. ``quality.check`` on the raw windows of each (expectations, rate, length) group, before any
   features: a failing window gets ``predicted="sensor_fault:<first check>"``, every failed
   check in ``Result.quality``, raw-signal statistics as features (``sensor_fault`` = 1), no
   model probabilities (confidence NaN), and never reaches the model.
2. The model's probabilities are temperature-scaled when the model card stores a temperature
   (``models.calibrate``): the reported probabilities and confidence are calibrated.
3. The OOD detector (``ood.json`` beside the model) and the kinematic thresholds stored with the
   model turn a verdict into ``"unknown"`` (``models.ood.decide``); the calibrated probabilities
   stay in the result, the model's own class is named in ``evidence``.
4. ``evidence``: ``signal.explain`` against the bearing's own baseline (a ``BaselineTracker``
   fed only with windows judged healthy).

Example:
    >>> from types import SimpleNamespace
    >>> classifier = SimpleNamespace(card={"calibration": {"temperature": 0.8}})  # no ood.json
    >>> layer = TrustLayer(load_trust(classifier))
    >>> layer.trust.temperature, layer.trust.detector
    (0.8, None)
    >>> windows = np.stack([np.random.default_rng(0).normal(size=5000), np.zeros(5000)])
    >>> [v.faults for v in layer.quality(windows, 5000.0, expectations(5000.0, 6.0))]
    [(), ('flat_line',)]
"""

from __future__ import annotations

import functools
import sys
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from slewguard.models.calibrate import apply_temperature, card_temperature
from slewguard.models.ood import OOD_FILE, OodDetector, Trust, decide
from slewguard.signal import quality as q
from slewguard.signal.explain import BaselineTracker, explain
from slewguard.signal.features import FeatureTable
from slewguard.signal.textify_evidence import explain as explain_evidence

if TYPE_CHECKING:
    from slewguard.models.runtimes import Classifier

MAX_EVIDENCE_CHARS = 240


def model_dir_of(classifier: Classifier) -> Path | None:
    """The directory a classifier was loaded from (holding card.json), or None.

    Example:
        >>> model_dir_of(object()) is None
        True
    """
    for candidate in (getattr(classifier, "model_dir", None),
                      getattr(getattr(classifier, "model", None), "name_or_path", None)):
        if candidate and (Path(candidate) / "card.json").is_file():
            return Path(candidate)
    return None


def load_trust(classifier: Classifier, model_dir: Path | None = None) -> Trust:
    """The Trust stored with the model: temperature, OOD detector, kinematic thresholds.

    Reads both card layouts (``models.ood.fit_trust``'s top-level ``kinematic_min_db`` /
    ``ood.file`` and the default-model build's ``trust`` section, ``models.build_write``). A
    missing piece is neutral (T = 1, no check).

    Example:
        >>> load_trust(object()).temperature
        1.0
    """
    card = dict(getattr(classifier, "card", None) or {})
    section = card.get("trust") if isinstance(card.get("trust"), Mapping) else {}
    min_db = card.get("kinematic_min_db") or section.get("kinematic_min_db")
    detector = None
    directory = model_dir or model_dir_of(classifier)
    if directory is not None:
        name = (card.get("ood") or {}).get("file") or section.get("ood_file") or OOD_FILE
        if (Path(directory) / name).is_file():
            detector = OodDetector.load(Path(directory) / name)
    return Trust(temperature=card_temperature(card), detector=detector,
                 min_db=dict(min_db) if min_db else None)


@functools.lru_cache(maxsize=1024)
def expectations(sample_rate_hz: float | None, rpm: float | None, rms: float | None = None,
                 order_lines: tuple[float, ...] = ()) -> q.QualityExpectations:
    """QualityExpectations from a sensor's configuration (cached: hashable and frozen).

    ``rpm`` matters only with ``order_lines`` (the rpm check needs a known line).

    Example:
        >>> expectations(5000.0, 6.0, None, (120.0,)).rpm
        6.0
    """
    return q.QualityExpectations(sample_rate_hz=sample_rate_hz,
                                 rpm=abs(rpm) if order_lines and rpm else None,
                                 order_lines=order_lines, rms=rms)


def raw_stats(windows: np.ndarray, rpm: np.ndarray) -> list[dict[str, float]]:
    """RMS, peak, crest factor and excess kurtosis of raw windows (B, N), plus rpm.

    What a sensor-fault result carries instead of envelope features (meaningless on a stuck or
    clipped channel); ``sensor_fault`` = 1.0 marks them as numeric field for the dashboards.

    Example:
        >>> raw_stats(np.ones((1, 8)), np.array([6.0]))[0]["peak"]
        1.0
    """
    x = np.asarray(windows, dtype=np.float64)
    centred = x - x.mean(axis=1, keepdims=True)
    std = centred.std(axis=1)
    rms = np.sqrt((x**2).mean(axis=1))
    peak = np.abs(x).max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        crest = np.where(rms > 0, peak / rms, np.nan)
        kurt = np.where(std > 0, (centred**4).mean(axis=1) / std**4 - 3.0, np.nan)
    return [{"rms": float(a), "peak": float(b), "crest_factor": float(c), "kurtosis": float(d),
             "rpm": float(r), "sensor_fault": 1.0}
            for a, b, c, d, r in zip(rms, peak, crest, kurt, rpm, strict=True)]


def _short(text: str) -> str:
    return text if len(text) <= MAX_EVIDENCE_CHARS else text[: MAX_EVIDENCE_CHARS - 3] + "..."


class TrustLayer:
    """Applies a Trust to batches and keeps the per-bearing baselines (one thread uses it).

    Example:
        >>> layer = TrustLayer(Trust())
        >>> layer.sensor_fault_evidence(q.QualityVerdict(False, ("clipping",), "clipping: 9"))
        'sensor fault, not the bearing: clipping: 9'
    """

    def __init__(self, trust: Trust | None = None,
                 thresholds: q.QualityThresholds | None = None,
                 baselines: BaselineTracker | None = None) -> None:
        self.trust = trust or Trust()
        self.thresholds = thresholds or q.QualityThresholds()
        self.baselines = baselines or BaselineTracker()

    def quality(self, windows: np.ndarray | list[np.ndarray], sample_rate_hz: float,
                expected: q.QualityExpectations) -> list[q.QualityVerdict]:
        """``quality.check`` on one group of windows ((B, N) or a list of (N,)) sharing rate
        and expectations."""
        return q.check(windows, sample_rate_hz, expected, self.thresholds)

    @staticmethod
    def sensor_fault_evidence(verdict: q.QualityVerdict) -> str:
        """The evidence line of a sensor-fault result."""
        return _short(f"sensor fault, not the bearing: {verdict.detail}")

    def judge(self, classes: list[str], proba: np.ndarray, names: tuple[str, ...],
              values: np.ndarray, rows: list[Mapping[str, float]],
              bearing_keys: list[str], evidence_rows: bool = False,
              ) -> list[tuple[str, np.ndarray, str, str]]:
        """Per window: (verdict, calibrated probabilities, unknown reason or "", evidence).

        ``values`` (B, F) are the feature rows in ``names`` order (for the vectorised OOD
        score); ``rows`` the same as dicts; ``bearing_keys`` name each window's baseline.
        ``evidence_rows``: the rows are the evidence stage's (a t3 model); they are explained
        in its words and its own commissioning baseline stands in for the running one.
        """
        trust = self.trust
        probs = apply_temperature(proba, trust.temperature) if trust.temperature != 1.0 else \
            np.asarray(proba, dtype=np.float64)
        detector = trust.detector if trust.detector is not None and \
            trust.detector.threshold is not None else None
        scores = detector.score(FeatureTable(names, values)) if detector is not None else None
        out = []
        for i, (p, row, key) in enumerate(zip(probs, rows, bearing_keys, strict=True)):
            best = classes[int(p.argmax())]
            score = None if scores is None else float(scores[i])
            # A NaN score (a feature not computable) fails `<=` and decide() calls it OOD.
            if (score is None or score <= detector.threshold) and (
                    trust.min_db is None or best not in trust.min_db):
                verdict, reason, why = best, "", ""  # fast path: nothing can overrule it
            else:
                try:
                    decision = decide(best, row, ood_score=score, detector=detector,
                                      min_db=trust.min_db)
                except ValueError:  # a class kinematics does not know: not checked
                    decision = decide(best, row, ood_score=score, detector=detector)
                verdict, why = decision.verdict, decision.reason
                reason = "" if verdict != "unknown" else (
                    "ood" if why.startswith("out of distribution") else "kinematic")
            text = explain_evidence(row) if evidence_rows else explain(row, self.baselines.get(key))
            if verdict == "unknown":
                text = f"unknown ({why}); model said {best} {p.max():.2f}; {text}"
            elif verdict == "healthy" and not evidence_rows:
                self.baselines.update(key, row)  # only trusted, alarm-free windows
            out.append((verdict, p, reason, _short(text)))
        return out


def split_by_quality(layer: TrustLayer, items: list,
                     warn: Callable[..., None]) -> tuple[list, list]:
    """(clean items, [(item, verdict, raw stats)]): checks per (expectations, rate, length).

    Items are the pipeline's: ``.place`` (Placement), ``.rpm``, ``.window`` (payload.Window).

    Example:
        >>> split_by_quality(TrustLayer(), [], print)
        ([], [])
    """
    groups: dict[tuple, list] = defaultdict(list)
    clean: list = []
    for item in items:
        p = item.place
        if not p.check_quality:
            clean.append(item)
            continue
        # A nominal rpm is expected to be off: the evidence stage fits the speed instead of
        # flagging it (the order-line rpm check would call every such window a sensor fault).
        lines = () if p.rpm_uncertainty > 0 else p.order_lines
        expected = expectations(p.sample_rate_hz, item.rpm, p.expected_rms, lines)
        groups[(expected, item.window.sample_rate_hz, item.window.samples.size)].append(item)
    faulty = []
    for (expected, rate, _), group in groups.items():
        windows = [item.window.samples for item in group]  # checked a chunk at a time
        try:
            verdicts = layer.quality(windows, rate, expected)
        except ValueError as exc:  # e.g. too short to judge: the features decide
            warn("quality", "quality checks skipped: %s", exc)
            clean.extend(group)
            continue
        bad = [i for i, v in enumerate(verdicts) if not v.ok]
        stats = raw_stats(np.stack([windows[i] for i in bad]),
                          np.array([group[i].rpm for i in bad])) if bad else []
        faulty.extend((group[i], verdicts[i], row) for i, row in zip(bad, stats, strict=True))
        clean.extend(item for item, v in zip(group, verdicts, strict=True) if v.ok)
    return clean, faulty


def apply_torch_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` for the calling thread when set (None: leave torch's)
    and torch is in use (imported by the model's runtime; ONNX Runtime sets its threads per
    session, and the serving path must not import torch).

    Torch keeps one process-wide count that a thread copies into its own OpenMP setting at its
    first torch call; a thread that sets its count before that call is overwritten by whatever
    the process-wide count is then. Hence the ``get_num_threads`` first: the thread's copy is
    made, and the count set here stays the thread's.

    Example:
        >>> apply_torch_threads(None)
    """
    torch = sys.modules.get("torch")  # a model on another runtime never imported it: leave it
    if threads is not None and torch is not None:
        torch.get_num_threads()  # this thread's first torch call: its copy of the global count
        torch.set_num_threads(int(threads))
