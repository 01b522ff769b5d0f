"""The daemon's inference stage: one ``predict_proba`` per prepared batch, then the trust layer.

The inference thread hands each ``PreparedBatch``'s texts to the model in ONE call; the trust
layer (service/trust.py) calibrates the probabilities and may overrule the verdict with
``unknown``; ``batch.model_result`` builds each window's result. A model that raises fails the
batch, not its messages: they stay unacknowledged (``inference_error`` is counted).

Example:
    >>> from types import SimpleNamespace
    >>> from slewguard.service.ingest import Inbound
    >>> from slewguard.service.payload import Window
    >>> from slewguard.service.placement import Placement
    >>> from slewguard.signal.kinematics import preset
    >>> place = Placement("site1", "crane3", "slew", "acc1", preset("cwru-6205"))
    >>> window = Window("acc1", 0, 12000.0, 1797.0, 7, "g", np.zeros(12000, np.float32))
    >>> item = WindowItem(Inbound("plant/acc1/vib", b"", 1, 1, 0.0, 0), window, place, 1797.0)
    >>> prepared = PreparedBatch([item], [{"rms": 0.1}], ["rms 0.1"], np.array([[0.1]]),
    ...                          ("rms",), [])
    >>> classifier = SimpleNamespace(classes=["healthy", "cage"],  # any Classifier
    ...                              predict_proba=lambda texts: [[0.75, 0.25]] * len(texts))
    >>> stage = InferenceStage(classifier, TrustLayer(), Metrics(), model="m1",
    ...                        rule_decides=False, reads_evidence=False)
    >>> items, unknown_reasons, results = stage.diagnose(prepared)
    >>> unknown_reasons, results[0].predicted, results[0].confidence, results[0].model
    ([''], 'healthy', 0.75, 'm1')
"""

from __future__ import annotations

import logging
import time

import numpy as np

from slewguard.models.runtimes import Classifier
from slewguard.service.batch import PreparedBatch, WindowItem, bearing_key, model_result
from slewguard.service.metrics import Metrics
from slewguard.service.result import Result
from slewguard.service.trust import TrustLayer

log = logging.getLogger("slewguard.service.pipeline")  # the pipeline's: its log lines keep it


def model_name(classifier: Classifier) -> str:
    """A short model label: ``.name``, else the card's name or family, else the class name.

    Example:
        >>> model_name(object())
        'object'
    """
    name = getattr(classifier, "name", None)
    if not name:
        card = getattr(classifier, "card", None) or {}
        name = card.get("name") or card.get("family") if isinstance(card, dict) else None
    return str(name or type(classifier).__name__)


class InferenceStage:
    """The model and the trust layer over a prepared batch; ``model`` labels the results,
    ``rule_decides`` lets the envelope rule's verdict stand, ``reads_evidence`` says the model
    reads evidence rows (template t3) rather than features."""

    def __init__(self, classifier: Classifier, trust: TrustLayer, metrics: Metrics, *,
                 model: str, rule_decides: bool, reads_evidence: bool) -> None:
        self.classifier = classifier
        self.trust = trust
        self.metrics = metrics
        self.model = model
        self.rule_decides = rule_decides
        self.reads_evidence = reads_evidence

    def diagnose(self, prepared: PreparedBatch
                 ) -> tuple[list[WindowItem], list[str], list[Result]]:
        """Model, then trust: (items, unknown reasons, results); nothing if the model failed."""
        kept, rows = prepared.items, prepared.rows
        if not kept:
            return [], [], []
        started = time.perf_counter()
        try:
            proba = np.asarray(self.classifier.predict_proba(prepared.texts), dtype=np.float64)
        except Exception:  # a model failure is not the messages' fault: leave them unacked
            log.exception("inference failed on a batch of %d; messages stay unacknowledged",
                          len(kept))
            self.metrics.windows_rejected_total.labels(reason="inference_error").inc(len(kept))
            return [], [], []
        self.metrics.stage_seconds.labels(stage="inference").observe(time.perf_counter() - started)
        started = time.perf_counter()
        judged = self.trust.judge(list(self.classifier.classes), proba, prepared.names,
                                  prepared.values, rows, [bearing_key(i.place) for i in kept],
                                  evidence_rows=self.reads_evidence)
        results = [model_result(item, row, verdict, p, evidence,
                                classes=list(self.classifier.classes), model=self.model,
                                rule_decides=self.rule_decides)
                   for item, row, (verdict, p, _, evidence) in zip(kept, rows, judged, strict=True)]
        self.metrics.stage_seconds.labels(stage="trust").observe(time.perf_counter() - started)
        return list(kept), [reason for _, _, reason, _ in judged], results
