"""The randomised simulator: machines differ in everything but the label, and a fault still
shows at its own geometry's order."""

from __future__ import annotations

import numpy as np

from slewguard.signal import evidence, randomise
from slewguard.signal.kinematics import preset
from slewguard.signal.textify_evidence import textify, vocabulary


def test_machines_differ_and_labels_are_off_within_bounds():
    rng = np.random.default_rng(5)
    machines = [randomise.draw_machine(rng, f"t{i}") for i in range(30)]
    gains = np.log10([m.gain for m in machines])
    assert np.ptp(gains) > 3  # > 60 dB of sensor gain across the fleet
    assert len({m.bearing for m in machines}) == 30
    assert len({preset(m.bearing).n_elements for m in machines}) > 5
    errors = np.array([m.rpm_label / m.rpm - 1 for m in machines])
    assert np.all(np.abs(errors) <= randomise.LABEL_ERROR) and np.ptp(errors) > 0.05
    assert all(1000 <= f < 0.45 * m.sample_rate_hz for m in machines for f in m.resonances_hz)


def test_same_seed_same_windows():
    a = randomise.randomised_sets(2, windows_per_class=1, seed=9)
    b = randomise.randomised_sets(2, windows_per_class=1, seed=9)
    assert all(np.array_equal(x.windows, y.windows) for x, y in zip(a, b, strict=True))


def test_a_race_fault_shows_at_its_order_and_the_twin_healthy_does_not():
    sets = randomise.randomised_sets(12, windows_per_class=2, baseline_windows=0, seed=3)
    strong, healthy = [], []
    for ws in sets:
        g = preset(ws.bearing)
        true = float(ws.meta["rpm_true"][0])
        for x, label in zip(ws.windows, ws.labels, strict=True):
            row = evidence.extract(x, ws.sample_rate_hz, g, true)
            if label == "outer_race":
                strong.append(row["bpfo_h1_db"])
            elif label == "healthy":
                healthy.append(max(row["bpfo_h1_db"], row["bpfi_h1_db"]))
    # faint faults exist on purpose; most race faults still stand out, healthy ones do not
    assert np.median(strong) > 12 > np.median(healthy)


def test_t2_text_uses_its_vocabulary_only():
    ws = randomise.randomised_sets(1, windows_per_class=1, seed=1)[0]
    g = preset(ws.bearing)
    base = evidence.Baseline.from_windows(list(ws.windows[:2]))
    words = set(vocabulary())
    for x, rpm in zip(ws.windows[2:], ws.rpm[2:], strict=True):
        row = evidence.extract(x, ws.sample_rate_hz, g, float(rpm), 0.08)
        row.update(evidence.relative(x, base))
        text = textify(row)
        assert set(text.split()) <= words and "nobase" not in text
    assert textify(row | {"has_baseline": 0.0}).endswith("nobase")
