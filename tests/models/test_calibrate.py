import numpy as np
import pytest

from slewguard.models.calibrate import (
    apply_temperature,
    calibration_record,
    card_temperature,
    expected_calibration_error,
    fit_temperature,
    reliability_diagram,
    softmax,
)


def _generative(n, n_classes=4, scale=2.0, seed=0):
    """Logits z and labels drawn from softmax(z): softmax(z) is calibrated by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, n_classes)) * scale
    p = softmax(z)
    labels = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    return z, labels


def test_temperature_undoes_an_overconfident_model_and_keeps_accuracy():
    z_val, y_val = _generative(4000, seed=1)
    z_test, y_test = _generative(4000, seed=2)
    t = fit_temperature(3 * z_val, y_val)  # the model's logits are 3x too sharp
    assert 2.6 < t < 3.4
    before = softmax(3 * z_test)
    after = apply_temperature(3 * z_test, t, is_probs=False)
    ece_before = expected_calibration_error(before, y_test)
    ece_after = expected_calibration_error(after, y_test)
    assert ece_after < 0.5 * ece_before and ece_after < 0.03
    assert (after.argmax(axis=1) == before.argmax(axis=1)).all()


def test_underconfident_model_gets_t_below_one():
    z, y = _generative(3000, seed=3)
    assert 0.4 < fit_temperature(z / 2, y) < 0.6


def test_probabilities_and_logits_give_the_same_calibration():
    z, y = _generative(1000, seed=4)
    probs = softmax(3 * z)
    t_probs = fit_temperature(np.log(probs), y)
    assert t_probs == pytest.approx(fit_temperature(3 * z, y), rel=1e-4)
    np.testing.assert_allclose(apply_temperature(probs, t_probs),
                               apply_temperature(3 * z, t_probs, is_probs=False), atol=1e-9)


def test_calibration_record_is_what_the_card_stores(tmp_path):
    z, y = _generative(2000, seed=5)
    record = calibration_record(softmax(3 * z), y)
    assert set(record) == {"temperature", "ece_before", "ece_after", "n_heldout", "n_bins"}
    assert record["ece_after"] < record["ece_before"]
    assert card_temperature({"calibration": record}) == record["temperature"]
    assert card_temperature({}) == 1.0
    png = reliability_diagram(softmax(3 * z), y, tmp_path / "rel" / "reliability.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ece_of_perfect_and_of_wrong_predictions():
    y = np.array([0, 1, 0, 1])
    assert expected_calibration_error(np.eye(2)[y], y) == 0.0
    assert expected_calibration_error(np.eye(2)[1 - y], y) == 1.0


@pytest.mark.parametrize(("scores", "labels", "needle"), [
    (np.zeros((3,)), np.zeros(3, int), "shape"),
    (np.zeros((3, 2)), np.zeros(2, int), "labels has shape"),
    (np.zeros((3, 2)), np.array([0, 1, 2]), "outside 0..1"),
    (np.full((2, 2), np.nan), np.zeros(2, int), "NaN"),
])
def test_bad_input_raises(scores, labels, needle):
    with pytest.raises(ValueError, match=needle):
        fit_temperature(scores, labels)


def test_bad_temperature_raises():
    with pytest.raises(ValueError, match="temperature=0"):
        apply_temperature(np.array([[0.5, 0.5]]), 0.0)
