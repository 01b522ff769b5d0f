"""Fixtures that start real services (own ports, own tmp dirs) and stop them by PID."""

from __future__ import annotations

import pytest

from tests.service import services

needs_mosquitto = pytest.mark.skipif(services.MOSQUITTO is None,
                                     reason="mosquitto binary not installed (apt: mosquitto)")
needs_prometheus = pytest.mark.skipif(services.PROMETHEUS is None or services.PROMTOOL is None,
                                      reason="prometheus/promtool not installed (apt: prometheus)")


@pytest.fixture
def mosquitto(tmp_path):
    """A fresh mosquitto on a free port, no persistence, anonymous allowed."""
    if services.MOSQUITTO is None:
        pytest.skip("mosquitto binary not installed (apt: mosquitto)")
    broker = services.start_mosquitto(tmp_path / "mosquitto")
    yield broker
    broker.stop()


@pytest.fixture
def mosquitto_factory(tmp_path):
    """Start brokers with options (persistence, extra config lines); all stopped at the end."""
    if services.MOSQUITTO is None:
        pytest.skip("mosquitto binary not installed (apt: mosquitto)")
    started: list[services.Mosquitto] = []

    def start(name: str = "mosquitto", **options) -> services.Mosquitto:
        broker = services.start_mosquitto(tmp_path / name, **options)
        started.append(broker)
        return broker

    yield start
    for broker in reversed(started):
        broker.stop()


@pytest.fixture
def prometheus_factory(tmp_path):
    """Start a Prometheus scraping the given targets; stopped at the end."""
    if services.PROMETHEUS is None:
        pytest.skip("prometheus not installed (apt: prometheus)")
    started: list[services.Prometheus] = []

    def start(targets: list[str]) -> services.Prometheus:
        prom = services.start_prometheus(tmp_path / "prometheus", targets)
        started.append(prom)
        return prom

    yield start
    for prom in started:
        prom.stop()


def tiny_classifier(seed: int = 0):
    """A real (randomly initialised, untrained) tiny BERT FaultClassifier over textify's words."""
    import torch

    from slewguard.models import backbones
    from slewguard.models.classifier import FaultClassifier
    from slewguard.signal import textify
    from slewguard.signal.scenario import FAULT_CLASSES

    torch.manual_seed(seed)
    backbone = backbones.from_scratch("tiny-bert", len(FAULT_CLASSES),
                                      vocabulary=textify.vocabulary())
    card = {"family": "tiny-bert", "base_model": "random init (tests)"}
    return FaultClassifier(backbone.model, backbone.tokenizer, FAULT_CLASSES,
                           textify.TEMPLATE_VERSION, card)


class ThreadsSeen:
    """The real tiny model, noting the thread and torch's thread count of each predict call."""

    def __init__(self, model) -> None:
        self.model, self.classes, self.card, self.seen = model, model.classes, model.card, []

    def predict_proba(self, texts):
        import threading

        import torch

        self.seen.append((threading.current_thread().name, torch.get_num_threads()))
        return self.model.predict_proba(texts)


@pytest.fixture(scope="session")
def classifier():
    """One tiny classifier shared by the session (read-only use)."""
    return tiny_classifier()


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory, classifier):
    """The tiny classifier saved where ``slewguard serve`` (models.load) can read it."""
    path = tmp_path_factory.mktemp("model") / "tiny-bert"
    classifier.save(path)
    return path
