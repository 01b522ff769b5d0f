"""Scoring a classifier of any runtime on labelled texts: accuracy, recall, confusion matrix.

Needs only ``clf.classes`` and ``clf.predict_proba(texts)``, so it runs without torch.

Example:
    >>> from types import SimpleNamespace  # a stand-in that always says outer race
    >>> clf = SimpleNamespace(classes=["healthy", "outer_race"],
    ...                       predict_proba=lambda texts: np.tile([0.1, 0.9], (len(texts), 1)))
    >>> evaluate(clf, ["outer 6 7 6", "outer 0 0 0"], ["outer_race", "healthy"])["accuracy"]
    0.5
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def evaluate(clf: Any, texts: Sequence[str], labels: Sequence[str]) -> dict:
    """Accuracy, per-class recall and confusion matrix (rows true, columns predicted).

    Example:
        >>> from types import SimpleNamespace  # a stand-in that always says outer race
        >>> clf = SimpleNamespace(classes=["healthy", "outer_race"],
        ...                       predict_proba=lambda texts: np.tile([0.1, 0.9], (len(texts), 1)))
        >>> scores = evaluate(clf, ["outer 6 7 6", "outer 0 0 0"], ["outer_race", "healthy"])
        >>> scores["accuracy"], scores["per_class"], scores["confusion"]
        (0.5, {'healthy': 0.0, 'outer_race': 1.0}, [[0, 1], [0, 1]])
    """
    index = {name: i for i, name in enumerate(clf.classes)}
    unknown = sorted(set(labels) - index.keys())
    if unknown:
        raise ValueError(f"labels {unknown} are not classes of this model ({clf.classes}); "
                         "score it on data of its own classes")
    truth = np.array([index[name] for name in labels], dtype=int)
    predicted = clf.predict_proba(texts).argmax(axis=1)
    confusion = np.zeros((len(clf.classes), len(clf.classes)), dtype=int)
    np.add.at(confusion, (truth, predicted), 1)
    per_class = {name: float(confusion[i, i] / confusion[i].sum())
                 for i, name in enumerate(clf.classes) if confusion[i].sum()}
    accuracy = float(np.trace(confusion) / max(len(truth), 1))
    return {"accuracy": accuracy, "per_class": per_class, "confusion": confusion.tolist()}
