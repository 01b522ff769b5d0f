"""Calibrated confidence: temperature scaling (Guo et al. 2017) fitted on a held-out split.

One scalar T divides the logits: p = softmax(z / T). T is fitted by minimising the negative
log-likelihood of held-out labels (L-BFGS on log T, so T stays positive). Dividing every logit by
the same T never changes the argmax, so accuracy is untouched; only the confidence moves. The
classifier's ``predict_proba`` already returns probabilities: log p = z - logsumexp(z) differs
from z by a per-row constant, so ``apply_temperature(probs, T)`` on probabilities equals
softmax(z / T) on logits.

The fitted numbers go into the model card as ``card["calibration"]`` (``calibration_record``).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(2000, 4)) * 2
    >>> y = np.array([rng.choice(4, p=p) for p in softmax(z)])
    >>> t = fit_temperature(3 * z, y)
    >>> 2.5 < t < 3.5
    True
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax

T_RANGE = (0.05, 100.0)  # a temperature outside this is a broken model or a broken split


def _check(scores: np.ndarray, labels: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 2 or s.shape[1] < 2 or len(s) == 0:
        raise ValueError(f"{name} has shape {s.shape}: pass (B, C) with C >= 2 classes, B >= 1")
    if y.shape != (len(s),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels has shape {y.shape} dtype {y.dtype}: pass one integer class "
                         f"index per row of {name}, shape ({len(s)},)")
    if y.min() < 0 or y.max() >= s.shape[1]:
        raise ValueError(f"labels range {y.min()}..{y.max()} is outside 0..{s.shape[1] - 1}")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} contains NaN/inf: fix the model outputs before calibrating")
    return s, y


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, float64 (B, C).

    Example:
        >>> softmax(np.zeros((1, 4))).tolist()
        [[0.25, 0.25, 0.25, 0.25]]
    """
    return np.exp(log_softmax(np.asarray(logits, dtype=np.float64), axis=1))


def _as_logits(probs_or_logits: np.ndarray, is_probs: bool) -> np.ndarray:
    x = np.asarray(probs_or_logits, dtype=np.float64)
    return np.log(np.clip(x, 1e-30, 1.0)) if is_probs else x


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T minimising the NLL of ``labels`` under softmax(logits / T).

    ``logits`` (B, C) of a held-out split (never the training split), ``labels`` (B,) indices.
    Pass log-probabilities when only probabilities are at hand (same T).

    Example:
        >>> z = np.array([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
        >>> round(fit_temperature(z, np.array([0, 1, 1])), 1)
        5.8
    """
    z, y = _check(logits, labels, "logits")

    def nll(log_t: np.ndarray) -> tuple[float, np.ndarray]:
        t = np.exp(log_t[0])
        logp = log_softmax(z / t, axis=1)
        p = np.exp(logp)
        loss = -logp[np.arange(len(y)), y].mean()
        # d loss / d log t = (z_y - E_p[z]) / t, averaged
        grad = ((z[np.arange(len(y)), y] - (p * z).sum(axis=1)) / t).mean()
        return float(loss), np.array([grad])

    lo, hi = np.log(T_RANGE)
    res = minimize(nll, x0=np.zeros(1), jac=True, method="L-BFGS-B", bounds=[(lo, hi)])
    return float(np.exp(res.x[0]))


def apply_temperature(scores: np.ndarray, temperature: float, is_probs: bool = True) -> np.ndarray:
    """Calibrated probabilities (B, C) float64 from probabilities (default) or logits.

    Example:
        >>> apply_temperature(np.array([[0.9, 0.1]]), 2.0).round(3).tolist()
        [[0.75, 0.25]]
    """
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature={temperature} must be a positive number (1.0: unchanged)")
    z = _as_logits(scores, is_probs)
    return softmax(np.atleast_2d(z) / temperature)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE: confidence-vs-accuracy gap over ``n_bins`` equal-width confidence bins, weighted.

    Example:
        >>> expected_calibration_error(np.array([[0.9, 0.1], [0.9, 0.1]]), np.array([0, 1]))
        0.4
    """
    p, y = _check(probs, labels, "probs")
    conf, hit = p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    weight = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, conf - hit, minlength=n_bins))
    return round(float(gap.sum() / len(p)), 12) if weight.sum() else 0.0


def reliability_diagram(probs: np.ndarray, labels: np.ndarray, path: Path, n_bins: int = 15,
                        title: str = "reliability") -> Path:
    """Write a reliability diagram (accuracy per confidence bin vs the diagonal) as a PNG.

    Example:
        >>> reliability_diagram(p, y, Path("out/model/reliability.png"))  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, y = _check(probs, labels, "probs")
    conf, hit = p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    acc = np.bincount(bins, hit, minlength=n_bins) / np.maximum(count, 1)
    centres = (np.arange(n_bins) + 0.5) / n_bins
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.bar(centres[count > 0], acc[count > 0], width=1 / n_bins, edgecolor="k", alpha=0.7,
           label="accuracy")
    ax.plot([0, 1], [0, 1], "r--", label="perfect calibration")
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title=f"{title} (ECE {expected_calibration_error(p, y, n_bins):.3f})")
    ax.legend(loc="upper left")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def calibration_record(scores: np.ndarray, labels: np.ndarray, is_probs: bool = True,
                       n_bins: int = 15) -> dict[str, float]:
    """Fit T on a held-out split and return the card section: temperature, ECE before/after.

    Store it as ``card["calibration"]`` (ModelCard allows extra sections).

    Example:
        >>> rec = calibration_record(probs_val, y_val)               # doctest: +SKIP
        >>> sorted(rec)                                               # doctest: +SKIP
        ['ece_after', 'ece_before', 'n_heldout', 'n_bins', 'temperature']
    """
    z = _as_logits(scores, is_probs)
    t = fit_temperature(z, labels)
    return {"temperature": t,
            "ece_before": expected_calibration_error(softmax(z), labels, n_bins),
            "ece_after": expected_calibration_error(softmax(z / t), labels, n_bins),
            "n_heldout": int(len(z)), "n_bins": int(n_bins)}


def card_temperature(card: dict | object) -> float:
    """The temperature stored in a model card (dict or ModelCard), 1.0 when none is stored.

    Example:
        >>> card_temperature({"calibration": {"temperature": 1.7}})
        1.7
    """
    section = card.get("calibration") if isinstance(card, dict) else getattr(
        card, "calibration", None)
    if not section:
        return 1.0
    return float(section["temperature"] if isinstance(section, dict) else section.temperature)
