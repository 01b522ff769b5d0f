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

This module is the pipeline (``build``: data -> trimmed backbone -> dense fine-tuning -> pruning
-> trust -> model directory); its knobs are ``build_config.BuildConfig``, the data comes from
``build_data`` (t1) or ``build_evidence`` (t3), what it writes from ``build_write`` and the
subcommand from ``build_cli``.

Files in the model directory (``build_write``): the weights and config (``export.save_pruned``),
the tokenizer, ``card.json`` (with ``calibration`` and ``trust`` sections), ``README.md``,
``ood.json`` and ``model.onnx``.

Example:
    $ slewguard build-default-model                # rebuilds slewguard/models/default/
    >>> clf = slewguard.models.shipped.load_default()   # doctest: +SKIP
    >>> clf.predict(["outer 6 6 5 inner 0 1 0 ball 0 0 0 cage 0 0 0 side 1 shaft 0 "
    ...              "kurt 1 crest 3 sk 4 rms 4 speed 3"])   # doctest: +SKIP
    ['outer_race']
"""

from __future__ import annotations

import shlex
import tempfile
import time
from pathlib import Path
from typing import Any

from slewguard.models.baseline_card import rule_accuracies, transfer_section
from slewguard.models.build_config import BuildConfig
from slewguard.models.build_data import BuildData, build_data
from slewguard.models.build_write import fit_trust, save_dense, write_model, write_onnx


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
