"""The default model shipped in the package, and the one command that rebuilds it.

``slewguard build-default-model`` simulates slewing-bearing windows (several bearing presets, 1-12
rpm, impact SNR -10..10 dB, severities up to the demo fleet's 2.0, constant and oscillating speed),
adds the CWRU recordings when they are present and turns every window into a textify text. It trims
the pretrained MiniLM's vocabulary to textify's closed vocabulary (logits unchanged, and
fine-tuning no longer drags a 30k-row embedding table), fine-tunes it, prunes it with the cascade
(layers -> heads -> FFN channels, LoRA recovery after each) followed by a short full fine-tuning of
the small pruned model, fits the temperature and the out-of-distribution detector on a held-out
split and writes everything with its card into ``slewguard/models/default/``.
``--quick`` runs the same path on a tiny random BERT and a few short windows (seconds, for tests).

Files in the model directory: the weights and config (``export.save_pruned``), the tokenizer,
``card.json`` (with ``calibration`` and ``trust`` sections), ``README.md`` and ``ood.json``.

Example:
    $ slewguard build-default-model                # rebuilds slewguard/models/default/
    >>> clf = slewguard.models.shipped.load_default()   # doctest: +SKIP
    >>> clf.predict(["outer 6 6 5 inner 0 1 0 ball 0 0 0 cage 0 0 0 side 1 shaft 0 "
    ...              "kurt 1 crest 3 sk 4 rms 4 speed 3"])   # doctest: +SKIP
    ['outer_race']
"""

from __future__ import annotations

import argparse
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from slewguard.models.baseline_card import rule_accuracies, transfer_lines, transfer_section
from slewguard.models.build_data import BuildData, build_data
from slewguard.models.shipped import DEFAULT_MODEL_DIR, SHIPPED_MODELS
from slewguard.signal.features import METHODS, check_method

WEIGHTS_DTYPES = ("float32", "bfloat16")  # how a build stores its weights
CLASSES = ("healthy", "inner_race", "outer_race", "rolling_element")
OOD_FILE = "ood.json"


class BuildConfig(BaseModel):
    """Every knob of the default-model build; ``BuildConfig.for_mode(quick)`` gives the defaults."""

    model_config = ConfigDict(extra="forbid")
    family: str = Field("minilm", description="backbone (backbones.SUPPORTED_FAMILIES)")
    classes: tuple[str, ...] = Field(CLASSES, min_length=2, description="output classes, in "
                                     "order (other data sets, e.g. bench_baselines' CWRU 3-class)")
    seed: int = Field(0, ge=0, description="seed of simulation, training and pruning")
    target_ratio: float = Field(8.0, gt=1.0, description="body compression dense/pruned")
    windows_per_class: int = Field(100, ge=4, description="simulated windows per class")
    window_seconds: float = Field(20.0, gt=0, description="simulated window length (publisher: 20)")
    sample_rate_hz: float = Field(5000.0, description="simulated sample rate (publisher: 5000)")
    snr_db: tuple[float, float] = Field((-10.0, 10.0), description="simulated SNR range in dB "
                                        "(impact SNR, scenario.SimulationSpec.snr_reference)")
    severity: tuple[float, float] = Field((0.5, 2.0), description="simulated fault severity range")
    calib_fraction: float = Field(0.2, gt=0, lt=0.5, description="share of train held out for "
                                  "validation, temperature and OOD threshold")
    fleet_windows_per_class: int = Field(12, ge=1, description="windows per class simulated as "
                                         "the demo fleet sends them (6 rpm, 0 dB, severity 2)")
    cwru_root: Path | None = Field(None, description="CWRU directory (None: the default place)")
    cwru_protocol: str = Field("paper-4class", description="cwru.load_cwru protocol")
    cwru_windows_per_class: int | None = Field(45, description="cap per class and side "
                                               "(None: every window)")
    epochs: int = Field(6, ge=1, description="dense fine-tuning epochs")
    lr: float = Field(1.5e-4, gt=0, description="dense fine-tuning learning rate")
    batch_size: int = Field(32, ge=1, description="texts per step")
    epoch_scale: float = Field(0.2, gt=0, description="cascade recovery epochs x this "
                               "(paper 10/10/30)")
    stage_shares: tuple[float, float, float] = Field(
        (0.5, 0.2, 0.3), description="cascade removal budget shares layers/heads/channels, "
        "pinned so that a change of the cascade's defaults does not silently change this model")
    criterion: str = Field("taylor", description="cascade head and channel importance, pinned "
                           "like the stage shares (taylor measured ahead of wanda, cascade.py)")
    distill_weight: float = Field(0.0, ge=0, le=1, description="cascade recovery's "
                                  "distillation from the dense model, pinned like the stage "
                                  "shares (the shipped build has none)")
    rounds: int = Field(1, ge=1, description="cascade head + channel rounds, pinned like the "
                        "stage shares (both shipped models were built with the paper's one)")
    finetune_epochs: int = Field(8, ge=0, description="full fine-tuning of the pruned model "
                                 "after the cascade (cheap at 8x; recovers what LoRA left)")
    finetune_lr: float = Field(2e-4, gt=0, description="learning rate of that fine-tuning")
    threads: int = Field(1, ge=1, description="torch CPU threads; 1 is faster than 2 on a "
                         "shared 2-core machine (OpenMP threads spin under load)")
    features: str = Field("tree", description="features.extract band search (features.METHODS)"
                          ": tree; stft is cheaper per window but its pruned models score "
                          "lower (docs/benchmarks.md, tree or stft band search)")
    weights_dtype: str = Field("float32", description="dtype the weights are stored in "
                               "(WEIGHTS_DTYPES): bfloat16 halves the file; accuracies and the "
                               "temperature are measured on the rounded weights")
    template: str = Field("t1", description="text template (signal.templates): t1 reads the "
                          "features of simulated slewing windows and CWRU; t3 reads the "
                          "rig-invariant evidence of the randomised simulator, CWRU and UESTC")
    sim_machines: int = Field(80, ge=2, description="t3: randomised simulated machines")
    sim_windows_per_class: int = Field(3, ge=1, description="t3: windows per class and machine")
    uestc_root: Path | None = Field(None, description="t3: UESTC directory (None: the "
                                    "default place)")
    transfer_results: Path | None = Field(None, description="bench_transfer.py's transfer.json: "
                                          "its leave-one-rig-out rows for this recipe go into "
                                          "the card")
    show_progress: bool = Field(True, description="rich progress bars")

    @field_validator("template")
    @classmethod
    def _known_template(cls, value: str) -> str:
        from slewguard.signal.templates import template

        template(value)
        return value

    @field_validator("features")
    @classmethod
    def _known_method(cls, value: str) -> str:
        return check_method(value, "features")

    @field_validator("weights_dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        if value not in WEIGHTS_DTYPES:
            raise ValueError(f"weights_dtype={value!r} is not a storage dtype of this build: "
                             f"pick one of {', '.join(WEIGHTS_DTYPES)}")
        return value

    @classmethod
    def for_mode(cls, quick: bool, **overrides: Any) -> BuildConfig:
        """Full-build defaults, or tiny sizes that run in seconds when ``quick``.

        Example:
            >>> BuildConfig.for_mode(quick=True).family
            'tiny-bert'
        """
        small = dict(family="tiny-bert", target_ratio=2.0, windows_per_class=6,
                     window_seconds=8.0, fleet_windows_per_class=2, cwru_windows_per_class=4,
                     epochs=2, lr=1e-3, epoch_scale=0.1, finetune_epochs=1,
                     sim_machines=4, sim_windows_per_class=1) if quick else {}
        return cls(**{**small, **{k: v for k, v in overrides.items() if v is not None}})


def data_of(config: BuildConfig, log: Any) -> BuildData:
    """The build's data: ``build_data`` for template t1, ``build_evidence.build_data`` for t3."""
    if config.template == "t3":
        from slewguard.models import build_evidence

        return build_evidence.build_data(config, log)
    return build_data(config, log)


def accuracies(clf: Any, data: BuildData) -> dict[str, float]:
    """Accuracy of ``clf`` on every split of ``data`` (train, calib, each test)."""
    from slewguard.models.scoring import evaluate

    return {s.name: round(evaluate(clf, s.texts, s.labels)["accuracy"], 4)
            for s in (data.train, data.calib, *data.tests)}


def trimmed_backbone(config: BuildConfig, data: BuildData, workdir: Path) -> tuple[Path, dict]:
    """The pretrained backbone with its vocabulary trimmed to textify's words, saved in workdir.

    Trimming first keeps every logit (vocab.trim_vocabulary) and spares fine-tuning and recovery
    the 30k-row embedding table; returns the directory and the rows before / after.
    """
    import torch

    from slewguard.models import backbones
    from slewguard.models.prune.vocab import trim_vocabulary
    from slewguard.signal.templates import template

    vocabulary = template(config.template).vocabulary
    torch.manual_seed(config.seed)  # the classifier head is initialised here, saved with it
    backbone = backbones.build(config.family, len(config.classes), vocabulary=vocabulary())
    rows = int(backbone.model.get_input_embeddings().weight.shape[0])
    # Every word textify can emit, so texts the build never saw still map to real ids.
    texts = [*data.train.texts, " ".join(vocabulary())]
    model, tokenizer = trim_vocabulary(backbone.model, backbone.tokenizer, texts)
    model.save_pretrained(workdir)
    tokenizer.save_pretrained(workdir)
    after = int(model.get_input_embeddings().weight.shape[0])
    return workdir, {"base_model": backbone.base_model, "vocab_rows": {"before": rows,
                                                                        "after": after}}


def train_dense(config: BuildConfig, data: BuildData, source: Path) -> tuple[Any, list[dict]]:
    """Fine-tune the (trimmed) backbone in ``source`` on the training texts, validating on the
    held-out ones."""
    from slewguard.models.classifier import train_classifier

    return train_classifier(
        data.train.texts, data.train.labels, data.calib.texts, data.calib.labels,
        classes=config.classes, family=config.family, source=str(source), epochs=config.epochs,
        lr=config.lr, batch_size=config.batch_size, seed=config.seed, max_length=64,
        show_progress=config.show_progress, template_version=config.template)


def prune(clf: Any, config: BuildConfig, data: BuildData) -> tuple[Any, dict]:
    """Cascade to ``config.target_ratio``; returns the pruned classifier and the report."""
    from slewguard.models.classifier import FaultClassifier, make_batches
    from slewguard.models.prune.cascade import CascadeConfig, run_cascade
    from slewguard.models.scoring import evaluate
    from slewguard.models.train import fit

    train = make_batches(clf, data.train.texts, data.train.labels, config.batch_size, config.seed)

    def validate(model: Any) -> dict[str, float]:
        wrapped = FaultClassifier(model, clf.tokenizer, clf.classes, clf.template_version)
        return {"calib_accuracy": evaluate(wrapped, data.calib.texts, data.calib.labels)[
            "accuracy"]}

    layer, head, channel = config.stage_shares
    cascade = CascadeConfig(target_ratio=config.target_ratio, epoch_scale=config.epoch_scale,
                            layer_share=layer, head_share=head, channel_share=channel,
                            head_criterion=config.criterion, channel_criterion=config.criterion,
                            distill_weight=config.distill_weight, seed=config.seed,
                            rounds=config.rounds, show_progress=config.show_progress)
    model, report = run_cascade(clf.model, clf.tokenizer, train, train, cascade, validate)
    finetune = fit(model, train, config.finetune_epochs, config.finetune_lr, evaluate=validate,
                   description="fine-tune pruned", show_progress=config.show_progress,
                   seed=config.seed) if config.finetune_epochs else []
    pruned = FaultClassifier(model, clf.tokenizer, clf.classes, clf.template_version,
                             max_length=clf.max_length)
    summary = {k: v for k, v in report.as_dict().items() if k != "stages"}
    summary["stages"] = [{k: s[k] for k in ("stage", "criterion", "granularity", "ratio",
                                            "body_parameters", "recovery_epochs", "metrics",
                                            "metrics_before_recovery", "seconds")}
                         for s in report.as_dict()["stages"]]
    summary["finetune_history"] = finetune
    return pruned, summary


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


def build(config: BuildConfig, out: Path, command: str = "", console: Any = None,
          dense_out: Path | None = None) -> dict:
    """Build the default model into ``out``; returns its card (also written as card.json).

    Example:
        >>> card = build(BuildConfig.for_mode(quick=True), Path("out/default"))  # doctest: +SKIP
        >>> card["compression"]["ratio"] > 1.5                                   # doctest: +SKIP
        True

    ``dense_out``: also save the fine-tuned dense model the pruning starts from (with its own
    temperature, ``ood.json`` and card), e.g. for ``bench/bench_limits.py --model``.
    """
    import torch
    from rich.console import Console

    from slewguard.models.prune import measure

    console = console or Console(quiet=not config.show_progress)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        start = time.perf_counter()
        data = data_of(config, console.log)
        console.log(f"data: {len(data.train)} train, {len(data.calib)} held-out, "
                    + ", ".join(f"{t.name} {len(t)}" for t in data.tests))
        pruned, card = train_and_prune(config, data, console.log, dense_out, command)
        if data.feature_names:  # t3: the simplest baseline on the same splits, for the card
            card["envelope_rule_accuracy"] = rule_accuracies(data)
        if config.transfer_results is not None:
            card["leave_one_rig_out"] = transfer_section(config.transfer_results,
                                                         config.target_ratio)
        card.update(fit_trust(pruned, data, out), command=command,
                    build={**config.model_dump(mode="json"), "notes": data.notes,
                           "wall_seconds": round(time.perf_counter() - start, 1)})
        write_model(pruned, out, card)
        write_onnx(out, data, console.log)
    finally:
        torch.set_num_threads(threads)
    console.log(f"wrote {out} ({measure.weight_bytes(out):,} weight bytes) in "
                f"{card['build']['wall_seconds']:.0f} s")
    return pruned.card


def train_and_prune(config: BuildConfig, data: BuildData, log: Any, dense_out: Path | None = None,
                    command: str = "") -> tuple[Any, dict]:
    """Trim the vocabulary, fine-tune dense, prune; returns the pruned classifier and its card
    (accuracy dense vs pruned per split, compression, pruning report, data provenance).

    ``dense_out``: save the dense classifier there (``save_dense``) before pruning changes it.
    """
    from slewguard.models.prune import measure
    from slewguard.models.scoring import evaluate

    with tempfile.TemporaryDirectory(prefix="slewguard-backbone-") as workdir:
        source, trim = trimmed_backbone(config, data, Path(workdir))
        log(f"{config.family}: vocabulary trimmed to textify's words "
            f"({trim['vocab_rows']['before']:,} -> {trim['vocab_rows']['after']} rows)")
        clf, history = train_dense(config, data, source)
    # the daemon computes the inputs the same way
    clf.card["features"] = config.features  # t3 models read the evidence; unused there
    dense, dense_body = accuracies(clf, data), measure.body_parameters(clf.model)
    log(f"dense {config.family}: {dense}")
    if dense_out is not None:
        keep = f"{command} --keep-dense {shlex.quote(str(dense_out))}" if command else ""
        save_dense(clf, data, dense_out, {"accuracy": dense, "command": keep,
                                          "base_model": trim["base_model"]})
        log(f"dense model saved in {dense_out}")
    card = dict(clf.card, base_model=f"{trim['base_model']} (vocabulary trimmed to textify's "
                "closed vocabulary before fine-tuning)")
    pruned, report = prune(clf, config, data)
    report["vocab_rows"] = trim["vocab_rows"]
    round_weights(pruned.model, config.weights_dtype)  # what follows sees the stored weights
    pruned_acc, pruned_body = accuracies(pruned, data), measure.body_parameters(pruned.model)
    log(f"pruned {report['final_ratio']:.2f}x: {pruned_acc}")
    on_test = evaluate(pruned, data.tests[0].texts, data.tests[0].labels)  # simulated test
    card.update(
        metrics={**card["metrics"], "accuracy": pruned_acc, "history": history,
                 "per_class": on_test["per_class"], "confusion": on_test["confusion"]},
        accuracy_dense=dense, pruning=report,
        data=[{k: v for k, v in s.items() if k != "provenance"} for s in data.sources],
        data_provenance={s["name"]: s["provenance"] for s in data.sources},
        compression={"dense_body": dense_body, "pruned_body": pruned_body,
                     "ratio": dense_body / pruned_body},
        parameters={"dense_total": card["parameters"]["total"], "dense_body": dense_body,
                    "pruned_body": pruned_body})  # save() adds the pruned "total"
    return pruned, card


def round_weights(model: Any, dtype: str) -> None:
    """Round ``model``'s floating-point weights in place to ``dtype``'s precision, keeping
    their own dtype: the model then computes what it will after being stored in ``dtype``.

    Example:
        >>> import torch
        >>> layer = torch.nn.Linear(1, 1)
        >>> _ = layer.weight.data.fill_(1 + 2**-10)
        >>> round_weights(layer, "bfloat16"); layer.weight.item()
        1.0
    """
    import torch

    store = getattr(torch, dtype)
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(store))


def save_dense(clf: Any, data: BuildData, out: Path, extra: dict) -> None:
    """Save the dense fine-tuned classifier with its held-out temperature and trust thresholds.

    ``extra``: accuracy per split, the build command and the base model, for its card. The OOD
    detector and kinematic thresholds depend on the features only, so they equal the pruned
    model's; the temperature is its own.

    Example:
        >>> save_dense(clf, data, Path("out/dense"), {"accuracy": {"test-sim": 0.88}})
        ... # doctest: +SKIP
    """
    card = dict(clf.card, base_model=f"{extra.get('base_model', 'unknown')} (vocabulary "
                "trimmed to textify's closed vocabulary before fine-tuning)",
                command=extra.get("command", ""),
                data=[{k: v for k, v in s.items() if k != "provenance"} for s in data.sources])
    card["metrics"] = {**card["metrics"], "accuracy": extra["accuracy"]}
    card.update(fit_trust(clf, data, Path(out)))
    clf.card = card
    clf.save(out)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``build-default-model`` subcommand."""
    parser = subparsers.add_parser(
        "build-default-model", help="rebuild the classifier shipped in slewguard/models/default",
        description="Simulated slewing data + CWRU -> texts -> MiniLM fine-tune -> cascade "
                    "pruning -> vocabulary trim -> temperature + OOD detector -> model + card.")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR, help="model directory")
    parser.add_argument("--quick", action="store_true",
                        help="tiny backbone and a few short windows (seconds; for tests)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, training, pruning")
    parser.add_argument("--target-ratio", type=float, help="body compression (default 8; quick 2)")
    parser.add_argument("--cwru-root", type=Path, help="CWRU directory (default: shared data)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--features", choices=METHODS, default="tree",
                        help="features.extract band search (default tree; stft: cheaper "
                             "features, less accurate: docs/benchmarks.md)")
    parser.add_argument("--weights-dtype", choices=WEIGHTS_DTYPES, default="float32",
                        help="store the weights in this dtype (bfloat16: half the file; the "
                             "card's accuracies are measured on the rounded weights)")
    parser.add_argument("--template", choices=("t1", "t3"), default="t1",
                        help="t1: features of simulated slewing windows and CWRU (default); "
                             "t3: rig-invariant evidence of the randomised simulator, CWRU and "
                             "UESTC (docs/transfer.md)")
    parser.add_argument("--transfer-results", type=Path, metavar="JSON",
                        help="bench/bench_transfer.py's transfer.json: its leave-one-rig-out "
                             "numbers for this recipe go into the card")
    parser.add_argument("--keep-dense", type=Path, metavar="DIR",
                        help="also save the fine-tuned dense model (before pruning) in DIR")
    parser.set_defaults(func=run_build)


def command_line(args: argparse.Namespace) -> str:
    """The command with its options spelled out, as the card records it."""
    words = ["slewguard", "build-default-model", "--seed", str(args.seed)]
    if Path(args.out).resolve() != DEFAULT_MODEL_DIR:  # the shipped dir is the default
        words += ["--out", str(args.out)]
    words += ["--quick"] if args.quick else []
    words += ["--threads", str(args.threads)] if args.threads != 1 else []
    words += ["--features", args.features] if args.features != "tree" else []
    words += ["--weights-dtype", args.weights_dtype] if args.weights_dtype != "float32" else []
    words += ["--template", args.template] if getattr(args, "template", "t1") != "t1" else []
    for name in ("target_ratio", "cwru_root", "transfer_results"):
        if getattr(args, name) is not None:
            words += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return shlex.join(words)


def run_build(args: argparse.Namespace) -> int:
    """Run the build from parsed arguments."""
    from slewguard.extras import require

    require("training", "build-default-model")
    from transformers.utils import logging as hf_logging

    if not getattr(args, "verbose", False):
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    if args.quick and Path(args.out).resolve() in SHIPPED_MODELS.values():
        raise ValueError(f"--quick builds a tiny test model; it must not replace the shipped "
                         f"one in {args.out}: pass --out DIR")
    config = BuildConfig.for_mode(args.quick, seed=args.seed, target_ratio=args.target_ratio,
                                  cwru_root=args.cwru_root, threads=args.threads,
                                  features=args.features,
                                  weights_dtype=args.weights_dtype,
                                  template=getattr(args, "template", "t1"),
                                  transfer_results=getattr(args, "transfer_results", None))
    keep = getattr(args, "keep_dense", None)
    if keep is not None and Path(keep).resolve() == Path(args.out).resolve():
        raise ValueError(f"--keep-dense {keep} is the --out directory: pass another DIR")
    build(config, args.out, command=command_line(args), dense_out=keep)
    return 0
