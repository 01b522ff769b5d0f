"""The text templates a model can read, registered under their version key.

A model's card names the template its texts were written in; the daemon and ``predict`` write
that one. ``t1`` (``signal.textify``) reads the feature row of ``features.extract``: fine on
the rig a model was trained on, rig-bound elsewhere. ``t3`` (``signal.textify_evidence``) reads
the rig-invariant evidence of ``signal.evidence`` and the bearing's baseline (the evidence
stage): the one that holds on a machine nobody recorded. A new template is a new module and
one entry here; a card naming a version not listed is refused.

Example:
    >>> template("t3").reads, template("t1").reads
    ('evidence', 'features')
    >>> template("t3").textify({"bpfo_h1_db": 3.0, "bpfi_h1_db": 14.0, "rms_rel_db": 0.0,
    ...                         "has_baseline": 1.0})
    'outer 0 inner 7 level 1'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Template:
    """One template: its version key, what it reads and how it writes and explains."""

    version: str
    reads: str  # "features" (features.extract rows) or "evidence" (evidence stage rows)
    textify: Callable[[Mapping[str, float]], str]
    vocabulary: Callable[[], list[str]]


def _t1() -> Template:
    from slewguard.signal import textify

    return Template(textify.TEMPLATE_VERSION, "features", textify.textify, textify.vocabulary)


def _t3() -> Template:
    from slewguard.signal import textify_evidence

    return Template(textify_evidence.TEMPLATE_VERSION, "evidence", textify_evidence.textify,
                    textify_evidence.vocabulary)


TEMPLATES: dict[str, Callable[[], Template]] = {"t1": _t1, "t3": _t3}


def known() -> tuple[str, ...]:
    """The versions this slewguard writes."""
    return tuple(TEMPLATES)


def template(version: str) -> Template:
    """The template of ``version``; ValueError naming the known ones otherwise."""
    if version not in TEMPLATES:
        raise ValueError(f"textify template {version!r} is not one this slewguard writes "
                         f"({', '.join(TEMPLATES)}): retrain or rebuild the model with this "
                         "slewguard")
    return TEMPLATES[version]()
