"""``model.onnx`` beside the safetensors: export, check against torch, record in the card.

``export_onnx(path, texts)`` loads the saved classifier in torch (float32, CPU), exports its
logits with the dynamo exporter (dynamic batch and sequence; per-layer widths are plain weight
shapes by then), and scores ``texts`` through both torch and the ONNX runtime
(``runtimes.onnx``: tokenizers + ONNX Runtime, as the daemon serves it). It keeps the file only
when the token ids are identical and the largest logit difference is <= ``MAX_LOGIT_DIFF``; the
card's ``onnx`` section records opset, runtime versions and that difference.

The graph's input names follow ``forward``'s argument order (``forward_input_names``): the
exporter names inputs by position, so names taken in the tokenizer's dict order (input_ids,
token_type_ids, attention_mask) silently swap BERT's mask and segment ids and give wrong classes
without any error. The parity check is what catches such a graph.

Example:
    $ slewguard export slewguard/models/default
    >>> export_onnx(Path("out/model"), texts)["max_abs_logit_diff"] <= MAX_LOGIT_DIFF
    ... # doctest: +SKIP
    True
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import json
import logging
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from slewguard.models import card as model_card
from slewguard.models.runtimes.onnx import ONNX_FILE

ROUNDING_LOGIT_DIFF = 1e-2  # below this, with every class the same: rounding
MAX_LOGIT_DIFF = 1e-4
PARITY_BATCH = 16  # the daemon's micro-batch
OPSET = 20
README_HEADING = "## ONNX"


def forward_input_names(model: Any, available: Sequence[str]) -> list[str]:
    """The tokenizer outputs ``available`` in the order ``model.forward`` takes them.

    Example:
        >>> class M:
        ...     def forward(self, input_ids, attention_mask=None, token_type_ids=None): ...
        >>> forward_input_names(M(), ["input_ids", "token_type_ids", "attention_mask"])
        ['input_ids', 'attention_mask', 'token_type_ids']
    """
    order = [name for name in inspect.signature(model.forward).parameters if name in available]
    missing = sorted(set(available) - set(order))
    if missing:
        raise ValueError(f"the tokenizer gives {missing}, which {type(model).__name__}.forward "
                         "does not take: save the model with its own tokenizer")
    return order


def _logits_module(model: Any, names: list[str]) -> Any:
    """``model`` as a module of positional tensors (in ``names`` order) -> logits (B, C)."""
    import torch

    extra = {"use_cache": False} if "use_cache" in inspect.signature(
        model.forward).parameters else {}

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, tensors, strict=True)), **extra).logits

    return Logits().eval()


def write_graph(model: Any, sample: dict, names: list[str], file: Path,
                graph_names: list[str] | None = None) -> None:
    """Export ``model``'s logits for inputs ``names`` (dynamic batch and sequence) to ``file``.

    ``graph_names`` labels the graph inputs (default ``names``): only tests pass another order.
    """
    import torch

    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    args = tuple(sample[name] for name in names)
    # progress notes at INFO, and "torchvision is not installed. Skipping torchvision::nms"
    # (four of them, about ops no model here uses) from the exporter's op registry
    quiet = {"onnx_ir": logging.WARNING, "onnxscript": logging.WARNING,
             "torch.onnx": logging.WARNING,
             "torch.onnx._internal.exporter._registration": logging.ERROR}
    levels = {name: logging.getLogger(name).level for name in quiet}
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # axis-rename notes; the parity check is the judge
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
        try:
            torch.onnx.export(
                _logits_module(model, names), args, str(file),
                input_names=graph_names or names, output_names=["logits"], dynamo=True,
                opset_version=OPSET, external_data=False,
                dynamic_shapes=(tuple({0: batch, 1: sequence} for _ in names),), verbose=False)
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


def parity(torch_clf: Any, onnx_clf: Any, texts: Sequence[str]) -> dict:
    """Token ids and logits of both runtimes on ``texts``, in micro-batches.

    Returns ``{"ids_identical", "max_abs_logit_diff", "argmax_agreement", "n_texts"}``.
    """
    import torch

    ids_identical, worst, agree = True, 0.0, 0
    for start in range(0, len(texts), PARITY_BATCH):
        chunk = list(texts[start:start + PARITY_BATCH])
        reference = torch_clf.encode(chunk)
        fed = onnx_clf.encode(chunk)
        ids_identical &= all(np.array_equal(reference[name].cpu().numpy(), fed[name])
                             for name in fed)
        with torch.no_grad():
            expected = torch_clf.model(**reference).logits.float().cpu().numpy()
        got = onnx_clf.logits(chunk)
        worst = max(worst, float(np.abs(got - expected).max()))
        agree += int((got.argmax(axis=1) == expected.argmax(axis=1)).sum())
    return {"ids_identical": bool(ids_identical), "max_abs_logit_diff": worst,
            "argmax_agreement": agree / max(len(texts), 1), "n_texts": len(texts)}


def export_onnx(path: Path | str, texts: Sequence[str], texts_source: str = "",
                graph_names: list[str] | None = None) -> dict:
    """Write ``path/model.onnx``, check it on ``texts``, record it in card.json; returns the
    card's ``onnx`` section. ValueError (and no file) when the check fails.

    Example:
        >>> export_onnx(Path("out/model"), texts, "test-sim")["opset"]   # doctest: +SKIP
        20
    """
    import torch

    from slewguard.models.classifier import load
    from slewguard.models.runtimes import onnx as onnx_runtime

    path = Path(path)
    if len(texts) < 2:
        raise ValueError(f"export needs at least 2 texts to check the graph, got {len(texts)}: "
                         "pass the model's test texts")
    torch_clf = load(path)  # float32 on the CPU: what the graph computes
    sample = dict(torch_clf.encode(list(texts[:2])))  # batch 2: a dynamic dim is never 1
    names = forward_input_names(torch_clf.model, list(sample))
    file = path / ONNX_FILE
    write_graph(torch_clf.model, sample, names, file, graph_names)
    card = model_card.read(path)
    try:
        onnx_clf = onnx_runtime.load(path, card, threads=1)
        check = parity(torch_clf, onnx_clf, texts)
    except BaseException:
        file.unlink(missing_ok=True)
        raise
    if not check["ids_identical"] or not check["max_abs_logit_diff"] <= MAX_LOGIT_DIFF:
        file.unlink(missing_ok=True)
        raise ValueError(f"{file} disagrees with torch on {check['n_texts']} texts (token ids "
                         f"identical: {check['ids_identical']}, max |logit difference| "
                         f"{check['max_abs_logit_diff']:.3g} > {MAX_LOGIT_DIFF}): "
                         f"{_disagreement_cause(check, graph_names or names, names)}; "
                         "not written")
    section = {"file": ONNX_FILE, "opset": OPSET, "input_names": graph_names or names,
               "dynamic_axes": ["batch", "sequence"], "bytes": file.stat().st_size,
               "torch_version": torch.__version__, "onnx_version": _version("onnx"),
               "onnxscript_version": _version("onnxscript"),
               "onnxruntime_version": _version("onnxruntime"),
               "tokenizers_version": _version("tokenizers"), "texts": texts_source, **check}
    record(path, section)
    return section


def export_beside(path: Path | str, texts: Sequence[str], texts_source: str,
                  log: Any = print) -> dict:
    """``export_onnx`` for commands that just trained a model (train, prune): a failed export
    is logged and recorded as ``card["onnx"]["skipped"]`` instead of losing the training; the
    daemon then serves the model with torch.

    Example:
        >>> export_beside(Path("out/model"), test_texts, "test side")["opset"]   # doctest: +SKIP
        20
    """
    try:
        return export_onnx(path, texts, texts_source)
    except Exception as exc:  # noqa: BLE001 (any exporter failure: the weights are saved)
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        log(f"model.onnx not written for {path} ({reason}); it is served with torch; retry "
            f"with `slewguard export {path}`")
        record_skip(Path(path), reason)
        return {"skipped": reason}


def record_skip(path: Path, reason: str) -> None:
    """card.json's ``onnx`` section says why there is no model.onnx."""
    card_file = path / model_card.CARD_FILE
    card = json.loads(card_file.read_text())
    card["onnx"] = {"skipped": reason}
    card_file.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def record(path: Path, section: dict) -> None:
    """Put ``section`` into card.json as ``onnx`` and one line into README.md (replacing an
    older one); the rest of both files stays as it is."""
    card_file = path / model_card.CARD_FILE
    card = json.loads(card_file.read_text())
    card["onnx"] = section
    model_card.ModelCard.model_validate(card)  # still a card; written as it was, plus onnx
    card_file.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    readme = path / model_card.README_FILE
    text = readme.read_text() if readme.is_file() else ""
    text = text.split(f"\n{README_HEADING}\n")[0].rstrip("\n") + "\n"
    text += (f"\n{README_HEADING}\n\n- `{ONNX_FILE}` ({section['bytes']:,} bytes, opset "
             f"{section['opset']}, inputs {', '.join(section['input_names'])}; dynamic batch "
             f"and sequence): max |logit - torch logit| {section['max_abs_logit_diff']:.2g} on "
             f"{section['n_texts']} texts ({section['texts'] or 'given'}); torch "
             f"{section['torch_version']}, onnxruntime {section['onnxruntime_version']}. "
             "`slewguard.models.load(path, runtime=\"onnx\")` serves it without torch.\n")
    readme.write_text(text)


def parity_texts(card: model_card.ModelCard, windows_per_class: int = 6,
                 seed: int = 424_242) -> tuple[list[str], str]:
    """Real texts for directories whose build texts are gone; returns (texts, description).

    The test side of the smallest simulated data set the card records with its spec (the
    model's own test windows, simulated again: the same spec gives the same windows), else
    freshly simulated windows of the card's classes; both with the card's feature method.
    """
    from slewguard.signal import datasets

    if card.template_version == "t3":
        return evidence_texts()
    method = model_card.features_method(card.model_dump())
    recorded = {name: entry["spec"] for name, entry in
                (getattr(card, "data_provenance", None) or {}).items()
                if isinstance(entry, dict) and entry.get("source") == "simulated"
                and isinstance(entry.get("spec"), dict)}
    if recorded:
        name = min(recorded, key=lambda n: recorded[n]["windows_per_class"]
                   * len(recorded[n]["classes"]))
        ws = datasets.simulate_dataset(datasets.SimulatedDatasetSpec(**recorded[name]),
                                       progress=False).test
        return (datasets.to_texts(ws, progress=False, method=method),
                f"test side of the card's {name!r} data, {len(ws)} windows simulated again "
                "from its spec")
    classes = tuple(c for c in card.classes if c in datasets.FAULT_CLASSES)
    if len(classes) < 2:
        raise ValueError(f"card classes {card.classes} cannot be simulated: pass --data DIR "
                         "with the model's own test windows")
    spec = datasets.SimulatedDatasetSpec(
        classes=classes, windows_per_class=windows_per_class, test_fraction=0.5,
        window_seconds=10.0, rpm_min=3.0, rpm_max=12.0, snr_db_min=-5.0, snr_db_max=10.0,
        severity_min=0.5, severity_max=2.0, seed=seed)
    split = datasets.simulate_dataset(spec, progress=False)
    texts = [t for side in (split.train, split.test)
             for t in datasets.to_texts(side, progress=False, method=method)]
    return texts, f"simulated, {len(texts)} windows of {', '.join(classes)}, seed {seed}"


def evidence_texts() -> tuple[list[str], str]:
    """A grid over what a t3 model can be fed: BPFO and BPFI levels (even with even, odd with
    odd) by level word; returns (texts, description).

    Example:
        >>> texts, what = evidence_texts(); len(texts), texts[0]
        (200, 'outer 0 inner 0 level 0')
    """
    levels = ["0", "3", "6", "9", "nobase"]
    texts = [f"outer {o} inner {i} level {v}" for o in range(0, 10, 2) for i in range(0, 10, 2)
             for v in levels] + [f"outer {o} inner {i} level {v}" for o in range(1, 10, 2)
                                 for i in range(1, 10, 2) for v in levels[::2]]
    return texts, f"a grid of {len(texts)} t3 texts over the template's levels"


def dataset_texts(data: Path, card: model_card.ModelCard) -> tuple[list[str], str]:
    """Texts of the test side of a data set directory (``slewguard dataset ...``)."""
    from slewguard.signal import datasets

    if card.template_version == "t3":
        raise ValueError(f"model template {card.template_version!r} reads the evidence "
                         "stage, not a data set's features: drop --data (the check then runs "
                         "on a grid of its template's texts)")
    ws = datasets.read(data).test
    texts = datasets.to_texts(ws, progress=False,
                              method=model_card.features_method(card.model_dump()))
    return texts, f"{data} test side, {len(texts)} windows"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    parser = subparsers.add_parser(
        "export", help="write model.onnx beside a saved model's weights (ONNX Runtime serving)",
        description="Export a model directory to ONNX, check its logits against torch on real "
                    "texts (max difference <= 1e-4) and record opset and versions in the card.")
    parser.add_argument("model", type=Path, help="model directory (slewguard train / prune)")
    parser.add_argument("--data", type=Path, help="data set whose test texts check the graph "
                        "(default: freshly simulated windows of the model's classes)")
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Export from parsed arguments and print the check."""
    from slewguard.extras import require

    require("export", "export")
    card = model_card.read(args.model)
    texts, source = dataset_texts(args.data, card) if args.data else parity_texts(card)
    section = export_onnx(args.model, texts, source)
    print(f"wrote {args.model / ONNX_FILE} ({section['bytes']:,} bytes, opset {section['opset']})"
          f": max |logit difference| {section['max_abs_logit_diff']:.2g} against torch on "
          f"{section['n_texts']} texts ({source})")
    return 0


def _disagreement_cause(check: dict, graph_names: list[str], names: list[str]) -> str:
    """Why a graph disagrees: mislabelled inputs change classes; the same classes with a
    difference this small are the graph's float rounding, which a deep model can pile up.

    Example:
        >>> _disagreement_cause({"ids_identical": True, "argmax_agreement": 1.0,
        ...                      "max_abs_logit_diff": 2e-4}, ["a"], ["a"])[:30]
        'the same classes on every text'
    """
    if (check["ids_identical"] and check.get("argmax_agreement") == 1.0
            and check["max_abs_logit_diff"] <= ROUNDING_LOGIT_DIFF):
        return ("the same classes on every text, so float rounding the graph piles up, not "
                "mislabelled inputs: serve this model on torch (model.runtime: torch)")
    return f"the graph's input names {graph_names} must follow forward's order {names}"

