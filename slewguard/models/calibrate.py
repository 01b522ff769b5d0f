"""Calibrated confidence: temperature scaling (Guo et al. 2017) fitted on a held-out split.

One scalar T divides the logits: p = softmax(z / T). T is fitted by minimising the negative
log-likelihood of held-out labels (L-BFGS on log T, so T stays positive). Dividing every logit by
the same T never changes the argmax, so accuracy is untouched; only the confidence moves. The
classifier's ``predict_proba`` already returns probabilities: log p = z - logsumexp(z) differs
from z by a per-row constant, so ``apply_temperature(probs, T)`` on probabilities equals
softmax(z / T) on logits.

Whether T is applied is decided out of sample: the held-out split is cut into stratified folds,
T is fitted on all folds but one and scored on that one, and the fitted T is kept only when these
cross-fitted scores show a lower NLL and an ECE that does not rise; otherwise T stays 1 and the
card says why. (A T that lowers the held-out NLL can still raise its ECE: minimising NLL on a
small split is not the same as calibrating it.)

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
from typing import Any

import numpy as np

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


def log_softmax(z: np.ndarray, axis: int = 1) -> np.ndarray:
    """Numerically stable log-softmax (numpy only: the serving path needs no scipy.special).

    Example:
        >>> log_softmax(np.zeros((1, 2))).round(4).tolist()
        [[-0.6931, -0.6931]]
    """
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


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
    from scipy.optimize import minimize  # fitting only; serving applies T without scipy

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
        >>> import tempfile
        >>> probs, labels = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]]), np.array([0, 1, 1])
        >>> with tempfile.TemporaryDirectory() as out:  # missing folders are made
        ...     png = reliability_diagram(probs, labels, Path(out) / "model" / "reliability.png")
        ...     png.name, png.read_bytes()[1:4]
        ('reliability.png', b'PNG')
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


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(true class), nats; probabilities clipped at 1e-30.

    Example:
        >>> round(negative_log_likelihood(np.array([[0.5, 0.5]]), np.array([0])), 4)
        0.6931
    """
    p, y = _check(probs, labels, "probs")
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-30, 1.0)).mean())


def stratified_folds(labels: np.ndarray, n_folds: int, seed: int = 0) -> np.ndarray:
    """Fold index (0..n_folds-1) per row, each class dealt round-robin after a seeded shuffle.

    Example:
        >>> np.bincount(stratified_folds(np.array([0, 0, 0, 1, 1, 1]), 3)).tolist()
        [2, 2, 2]
    """
    if n_folds < 2:
        raise ValueError(f"n_folds={n_folds}: cross-fitting needs at least 2 folds")
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    folds = np.zeros(len(y), dtype=int)
    offset = 0  # continue the deal across classes so small classes do not all land in fold 0
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        folds[idx] = (offset + np.arange(len(idx))) % n_folds
        offset += len(idx)
    return folds


def cross_fit(logits: np.ndarray, labels: np.ndarray, n_folds: int = 5, n_bins: int = 15,
              seed: int = 0) -> dict[str, Any]:
    """Out-of-sample effect of temperature scaling: T fitted without each fold, scored on it.

    Returns NLL and ECE of the pooled out-of-fold probabilities at T = 1 (``*_before``) and at
    each fold's own T (``*_after``), with the per-fold temperatures.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 300)
        >>> z = rng.normal(size=(300, 3)) + 2.0 * np.eye(3)[y]  # logits of a fair model
        >>> cf = cross_fit(3 * z, y)  # overconfident: every logit 3 x too large
        >>> bool(cf["nll_after"] < cf["nll_before"])
        True
    """
    z, y = _check(logits, labels, "logits")
    folds = stratified_folds(y, min(n_folds, len(y)), seed)
    after, temperatures = np.zeros_like(z), []
    for fold in np.unique(folds):
        inside = folds == fold
        t = fit_temperature(z[~inside], y[~inside])
        after[inside] = softmax(z[inside] / t)
        temperatures.append(t)
    before = softmax(z)
    return {"folds": len(temperatures), "temperatures": temperatures,
            "nll_before": negative_log_likelihood(before, y),
            "nll_after": negative_log_likelihood(after, y),
            "ece_before": expected_calibration_error(before, y, n_bins),
            "ece_after": expected_calibration_error(after, y, n_bins)}


def scaling_verdict(crossfit: dict[str, Any]) -> tuple[bool, str]:
    """Apply the fitted T? Only when cross-fitted NLL falls and cross-fitted ECE does not rise.

    Example:
        >>> scaling_verdict({"folds": 5, "nll_before": 0.5, "nll_after": 0.4,
        ...                  "ece_before": 0.10, "ece_after": 0.12})[0]
        False
    """
    numbers = (f"cross-fitted over {crossfit['folds']} folds of the held-out split: NLL "
               f"{crossfit['nll_before']:.4f} -> {crossfit['nll_after']:.4f}, ECE "
               f"{crossfit['ece_before']:.4f} -> {crossfit['ece_after']:.4f}")
    if crossfit["nll_after"] >= crossfit["nll_before"]:
        return False, f"T kept at 1: scaling does not lower the NLL out of sample ({numbers})"
    if crossfit["ece_after"] > crossfit["ece_before"]:
        return False, f"T kept at 1: scaling raises the ECE out of sample ({numbers})"
    return True, f"fitted T applied: it lowers the NLL and not the ECE out of sample ({numbers})"


def calibration_record(scores: np.ndarray, labels: np.ndarray, is_probs: bool = True,
                       n_bins: int = 15, n_folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Fit T on a held-out split, keep it only if it helps out of sample; the card section.

    ``temperature`` is what to apply (1.0 when scaling was rejected), ``temperature_fitted`` the
    NLL-optimal T on the whole split, ``reason`` the cross-fitted evidence (``cross_fit``,
    ``scaling_verdict``), ``ece_before`` / ``ece_after`` the held-out ECE at T = 1 and at the
    applied T. Store it as ``card["calibration"]`` (ModelCard allows extra sections).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y_val = rng.integers(0, 3, 300)
        >>> z = 3 * (rng.normal(size=(300, 3)) + 2.0 * np.eye(3)[y_val])
        >>> probs_val = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        >>> rec = calibration_record(probs_val, y_val)
        >>> rec["temperature"] == (rec["temperature_fitted"] if rec["applied"] else 1.0)
        True
    """
    z = _as_logits(scores, is_probs)
    fitted = fit_temperature(z, labels)
    applied, reason, crossfit = False, "T kept at 1: one held-out row cannot be cross-fitted", {}
    if len(z) >= 2:
        crossfit = cross_fit(z, labels, n_folds, n_bins, seed)
        applied, reason = scaling_verdict(crossfit)
    t = fitted if applied else 1.0
    return {"temperature": t, "temperature_fitted": fitted, "applied": applied, "reason": reason,
            "ece_before": expected_calibration_error(softmax(z), labels, n_bins),
            "ece_after": expected_calibration_error(softmax(z / t), labels, n_bins),
            "crossfit": crossfit, "n_heldout": int(len(z)), "n_bins": int(n_bins)}


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
