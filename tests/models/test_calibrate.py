import numpy as np
import pytest

from slewguard.models.calibrate import (
    apply_temperature,
    calibration_record,
    card_temperature,
    cross_fit,
    expected_calibration_error,
    fit_temperature,
    reliability_diagram,
    scaling_verdict,
    softmax,
    stratified_folds,
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


def _confidently_wrong(n, share=0.04, seed=0):
    """A calibrated model except for a few windows it gets wrong with logit 12 against 0.

    Minimising NLL lets those few drag T to ~2, which makes every other window underconfident:
    the held-out NLL falls but the ECE more than doubles.
    """
    z, y = _generative(n, seed=seed)
    idx = np.random.default_rng(seed + 100).choice(n, int(share * n), replace=False)
    z[idx] = 0.0
    z[idx, (y[idx] + 1) % z.shape[1]] = 12.0
    return z, y


def test_calibration_record_is_what_the_card_stores(tmp_path):
    z, y = _generative(2000, seed=5)
    record = calibration_record(softmax(3 * z), y)
    assert record["applied"] and record["reason"].startswith("fitted T applied")
    assert record["temperature"] == record["temperature_fitted"]
    assert record["ece_after"] < record["ece_before"]
    cf = record["crossfit"]
    assert cf["folds"] == 5 and cf["nll_after"] < cf["nll_before"]
    assert cf["ece_after"] < cf["ece_before"]
    assert card_temperature({"calibration": record}) == record["temperature"]
    assert card_temperature({}) == 1.0
    png = reliability_diagram(softmax(3 * z), y, tmp_path / "rel" / "reliability.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scaling_that_does_not_help_out_of_sample_keeps_t_at_one():
    z, y = _confidently_wrong(1000)
    record = calibration_record(z, y, is_probs=False)
    assert record["temperature_fitted"] > 1.5  # NLL alone would apply it
    assert not record["applied"] and record["temperature"] == 1.0
    assert "raises the ECE out of sample" in record["reason"]
    assert record["crossfit"]["ece_after"] > record["crossfit"]["ece_before"]
    assert record["ece_after"] == record["ece_before"]  # what the daemon will report: unscaled
    assert card_temperature({"calibration": record}) == 1.0


def test_verdict_rejects_a_temperature_that_raises_the_nll_out_of_sample():
    ok, reason = scaling_verdict({"folds": 5, "nll_before": 0.40, "nll_after": 0.41,
                                  "ece_before": 0.10, "ece_after": 0.05})
    assert not ok and "does not lower the NLL" in reason


def test_cross_fit_scores_each_fold_with_a_temperature_fitted_without_it():
    z, y = _generative(600, seed=7)
    cf = cross_fit(3 * z, y, n_folds=3)
    assert cf["folds"] == 3 and len(cf["temperatures"]) == 3
    assert all(2.3 < t < 3.7 for t in cf["temperatures"])
    assert cf["ece_after"] < 0.5 * cf["ece_before"]


def test_folds_are_stratified_and_cover_every_row():
    y = np.repeat([0, 1, 2], [10, 7, 3])
    folds = stratified_folds(y, 5, seed=1)
    assert folds.shape == y.shape and set(folds) == set(range(5))
    assert np.bincount(folds).max() - np.bincount(folds).min() <= 1
    for label, count in ((0, 10), (1, 7)):
        assert np.bincount(folds[y == label], minlength=5).min() >= count // 5
    with pytest.raises(ValueError, match="n_folds=1"):
        stratified_folds(y, 1)


def test_too_small_a_split_keeps_t_at_one():
    record = calibration_record(np.array([[3.0, 0.0]]), np.array([1]), is_probs=False)
    assert record["temperature"] == 1.0 and "cannot be cross-fitted" in record["reason"]


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
