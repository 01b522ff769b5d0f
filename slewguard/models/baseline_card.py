"""The card's baselines of a t3 build: the envelope rule on the build's own splits, and the
recipe's leave-one-rig-out numbers from ``bench/bench_transfer.py`` beside the rule's and
gradient boosting's.

Example:
    >>> transfer_lines({"command": "c", "note": "n", "method": "m", "rows": []})[1]
    '## Leave one rig out'
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from slewguard.models.build_data import BuildData


def rule_accuracies(data: BuildData) -> dict[str, float]:
    """The envelope rule's accuracy (``signal.rule``, default thresholds) on every split of a
    t3 build, whose features hold the rule's three inputs."""
    from slewguard.signal.rule import verdicts

    cols = [data.feature_names.index(n) for n in ("bpfo_h1_db", "bpfi_h1_db", "rms_rel_db")]
    return {split.name: round(float(np.mean(verdicts(*split.features[:, cols].T) == np.asarray(
        split.labels))), 4) for split in (data.train, data.calib, *data.tests)}


TRANSFER_COMMAND = ".venv/bin/python bench/bench_transfer.py --lm all"
TRANSFER_BASELINES = ("envelope_rule", "gradient_boosting")


def transfer_section(path: Path, target_ratio: float) -> dict:
    """The card's ``leave_one_rig_out`` section from ``bench/bench_transfer.py``'s JSON: per
    held-out domain and training set, the median over seeds of this recipe (the language model
    pruned to ``target_ratio``) beside the envelope rule and gradient boosting.

    Example:
        >>> import json, tempfile
        >>> run = {"seed": 0, "held_out": "cwru", "train": "sim", "method": "lm_pruned_8.7x",
        ...        "accuracy": 0.9, "healthy_false_alarm": 0.0, "useful_call_rate": 0.8}
        >>> f = Path(tempfile.mkdtemp()) / "t.json"; _ = f.write_text(json.dumps({"runs": [run]}))
        >>> transfer_section(f, 8.7)["rows"][0]["lm_pruned_8.7x"]["accuracy"]
        0.9
    """
    runs = json.loads(Path(path).read_text())["runs"]
    method = f"lm_pruned_{target_ratio:g}x"
    rows = []
    for case in sorted({(r["held_out"], r["train"]) for r in runs}):
        row = {"held_out": case[0], "trained_on": case[1]}
        for name in (method, *TRANSFER_BASELINES):
            mine = [r for r in runs if (r["held_out"], r["train"]) == case and r["method"] == name]
            if mine:
                row[name] = {k: round(float(np.median([r[k] for r in mine if r[k] is not None]
                                                        or [np.nan])), 4)
                             for k in ("accuracy", "healthy_false_alarm", "useful_call_rate")}
                row[name]["seeds"] = len(mine)
        rows.append(row)
    return {"command": TRANSFER_COMMAND, "method": method, "rows": rows,
            "note": "the recipe of this model (t3 evidence text, MiniLM, cascade to "
                    f"{target_ratio:g}x) trained without the held-out domain; the shipped "
                    "model itself saw all three"}


def transfer_lines(section: dict) -> list[str]:
    """README lines of a ``transfer_section``."""
    method = section["method"]
    lines = ["", "## Leave one rig out", "", f"`{section['command']}`: {section['note']}. "
             "Accuracy / healthy false alarms / useful calls, median over seeds:", "",
             f"| held out | trained on | {method} | envelope rule | gradient boosting |",
             "|---|---|---|---|---|"]
    for row in section["rows"]:
        cells = [" / ".join("-" if np.isnan(row[m][k]) else f"{row[m][k]:.1%}" for k in (
            "accuracy", "healthy_false_alarm", "useful_call_rate")) if m in row else "-"
            for m in (method, *TRANSFER_BASELINES)]
        lines.append(f"| {row['held_out']} | {row['trained_on']} | " + " | ".join(cells) + " |")
    return lines
