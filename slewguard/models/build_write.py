"""What the default-model build writes into a model directory, and the trust pieces it fits.

``fit_trust`` fits the temperature on the held-out split, the out-of-distribution detector
(written as ``ood.json``) and the kinematic thresholds; ``write_model`` saves the weights (in
the build's storage dtype), tokenizer and ``card.json`` and appends the build summary to
``README.md``; ``write_onnx`` adds ``model.onnx``, checked against torch on the test splits;
``save_dense`` saves the dense model the pruning started from (``--keep-dense``).

Example:
    >>> calibration_line({"temperature": 1.2, "ece_before": 0.08, "ece_after": 0.03})
    '- temperature: 1.200 (fitted 1.200, applied; held-out ECE 0.080 -> 0.030): '
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from slewguard.models.baseline_card import transfer_lines
from slewguard.models.build_data import BuildData
from slewguard.models.shipped import SHIPPED_MODELS

OOD_FILE = "ood.json"


def fit_trust(clf: Any, data: BuildData, out: Path) -> dict:
    """Temperature on the held-out split, OOD detector (``ood.json``), kinematic thresholds.

    Returns the card sections; a part whose module is missing is reported as skipped.
    """
    from slewguard.models import calibrate

    index = {name: i for i, name in enumerate(clf.classes)}
    truth = np.array([index[y] for y in data.calib.labels])
    sections: dict[str, Any] = {
        "calibration": calibrate.calibration_record(clf.predict_proba(data.calib.texts), truth)}
    try:
        from slewguard.models.ood import OodDetector, fit_kinematic_thresholds
        from slewguard.signal.features import FEATURE_NAMES, FeatureTable
    except ImportError as exc:  # the trust checks ship separately; the model works without
        sections["trust"] = {"skipped": f"slewguard.models.ood unavailable ({exc})"}
        return sections
    names = data.feature_names or FEATURE_NAMES
    train = FeatureTable(names, data.train.features)
    detector = OodDetector().fit(train).calibrate(FeatureTable(names, data.calib.features))
    out.mkdir(parents=True, exist_ok=True)
    detector.save(out / OOD_FILE)
    sections["trust"] = {
        "ood_file": OOD_FILE, "ood_threshold": detector.threshold,
        "ood_fit_windows": detector.n_fit, "ood_heldout_windows": detector.n_heldout,
        # t3 models read the defect lines themselves: no separate kinematic check
        "kinematic_min_db": None if data.feature_names else fit_kinematic_thresholds(
            train, np.asarray(data.train.labels))}
    return sections


def save_dense(clf: Any, data: BuildData, out: Path, extra: dict) -> None:
    """Save the dense fine-tuned classifier with its held-out temperature and trust thresholds.

    ``extra``: accuracy per split, the build command and the base model, for its card. The OOD
    detector and kinematic thresholds depend on the features only, so they equal the pruned
    model's; the temperature is its own.

    Example:
        >>> import tempfile
        >>> from slewguard.models import backbones, build_data, classifier
        >>> from slewguard.signal.features import FEATURE_NAMES
        >>> bb = backbones.build("tiny-bert", num_labels=2)  # random: saved all the same
        >>> clf = classifier.FaultClassifier(bb.model, bb.tokenizer, ["healthy", "cage"], "t1")
        >>> clf.card["metrics"] = {}  # a trained one's card has them
        >>> split = build_data.Texts("sim", ["cage 2 0"] * 10, ["healthy"] * 10,
        ...                          np.zeros((10, len(FEATURE_NAMES))))
        >>> data = BuildData(split, split, [split])  # train, held-out, tests
        >>> with tempfile.TemporaryDirectory() as out:
        ...     save_dense(clf, data, Path(out), {"accuracy": {"sim": 1.0}})
        ...     (Path(out) / "ood.json").is_file(), clf.card["metrics"]["accuracy"]
        (True, {'sim': 1.0})
    """
    card = dict(clf.card, base_model=f"{extra.get('base_model', 'unknown')} (vocabulary "
                "trimmed to textify's closed vocabulary before fine-tuning)",
                command=extra.get("command", ""),
                data=[{k: v for k, v in s.items() if k != "provenance"} for s in data.sources])
    card["metrics"] = {**card["metrics"], "accuracy": extra["accuracy"]}
    card.update(fit_trust(clf, data, Path(out)))
    clf.card = card
    clf.save(out)


def write_model(clf: Any, out: Path, card: dict) -> None:
    """Save weights, tokenizer and card, then add the build summary to README.md."""
    import torch

    from slewguard.models.prune import measure

    clf.card = card
    kept = clf.model.dtype
    clf.model.to(getattr(torch, card["build"]["weights_dtype"]))
    try:
        clf.save(out)
    finally:
        clf.model.to(kept)
    lines = ["", "## Default-model build", "",
             "| split | dense | pruned |", "|---|---|---|",
             *(f"| {k} | {card['accuracy_dense'].get(k, float('nan')):.2%} | {v:.2%} |"
               for k, v in card["metrics"]["accuracy"].items()),
             "", f"- compression (body, dense/pruned): {card['compression']['ratio']:.2f}x "
                 f"({card['compression']['dense_body']:,} -> "
                 f"{card['compression']['pruned_body']:,} parameters)",
             *(["- envelope rule on the same splits (the simplest baseline): " + ", ".join(
                 f"{k} {v:.2%}" for k, v in card["envelope_rule_accuracy"].items())]
               if "envelope_rule_accuracy" in card else []),
             f"- vocabulary rows: {card['pruning']['vocab_rows']}",
             f"- weight bytes: {measure.weight_bytes(out):,} "
             f"({card['build']['weights_dtype']})",
             calibration_line(card["calibration"]),
             f"- out-of-distribution detector: {card['trust'].get('ood_file', 'none')} "
             f"(threshold {card['trust'].get('ood_threshold')}); kinematic thresholds (dB): "
             f"{card['trust'].get('kinematic_min_db', card['trust'].get('skipped'))}",
             f"- build wall time: {card['build']['wall_seconds']:.0f} s",
             *(f"- note: {note}" for note in card["build"]["notes"]),
             *(transfer_lines(card["leave_one_rig_out"]) if "leave_one_rig_out" in card else []),
             "", "Rebuild with the command above (it is the whole pipeline); "
             "`slewguard.models.shipped.load_default(name)` loads a shipped model "
             f"({', '.join(SHIPPED_MODELS)}).", ""]
    with (out / "README.md").open("a") as fh:
        fh.write("\n".join(lines))


def write_onnx(out: Path, data: BuildData, log: Any) -> None:
    """``model.onnx`` beside the weights, checked on every test split (``onnx_export``); the
    card's ``onnx`` section and README's last line record it."""
    from slewguard.models.onnx_export import export_onnx

    texts = [t for split in data.tests for t in split.texts]
    section = export_onnx(out, texts, "build test splits: " + ", ".join(
        f"{s.name} {len(s)}" for s in data.tests))
    log(f"model.onnx: max |logit difference| {section['max_abs_logit_diff']:.2g} against "
        f"torch on {section['n_texts']} test texts")


def calibration_line(record: dict) -> str:
    """The README line of a ``calibrate.calibration_record``: applied T, held-out ECE, why.

    Example:
        >>> calibration_line({"temperature": 1.0, "temperature_fitted": 1.16, "applied": False,
        ...                   "ece_before": 0.06, "ece_after": 0.06, "reason": "T kept at 1"})
        '- temperature: 1.000 (fitted 1.160, not applied; held-out ECE 0.060 -> 0.060): T kept at 1'
    """
    fitted = record.get("temperature_fitted", record["temperature"])
    applied = "applied" if record.get("applied", True) else "not applied"
    return (f"- temperature: {record['temperature']:.3f} (fitted {fitted:.3f}, {applied}; "
            f"held-out ECE {record['ece_before']:.3f} -> {record['ece_after']:.3f}): "
            f"{record.get('reason', '')}")
