"""The Structural Independence Assumption (SIA) check: static (from the config) and measured.

A per-component importance criterion is reliable only if removing component i does not change what
component j computes. The paper's check is static, two questions about the config: do query heads
share key/value projections (GQA/MQA, group size D > 1)? Is the FFN gated (SwiGLU/GeGLU)? Yes to
either means the SIA is violated.

The measured check removes components by masking (forward hooks, the weights stay) and computes
the interaction Delta_ij = L(-i,-j) - L(-i) - L(-j) + L of the calibration loss over sampled pairs.
Each component is removed the way an MHA-minded per-component pruner removes it: a head takes its
value projection along, so in a GQA model it takes its whole KV group (and its sibling heads) with
it; a gated FFN's gate_j and up_j are separate components. If the SIA holds, Delta is second order
and small next to the single-removal effects; if it is violated, Delta is as large as they are.
Ranking stability: Spearman/Kendall of leave-one-out importance before and after removing the
top-k components.

Example:
    >>> from slewguard.models.backbones import tiny_config
    >>> model = FAMILIES["llama"].model_class(tiny_config("llama"))  # GQA (D = 2), SwiGLU
    >>> static_check(model.config).satisfied
    False
    >>> batches = [{"input_ids": torch.randint(4, 64, (4, 8)), "labels": torch.arange(4) % 2}]
    >>> measured_check(model, batches, pairs_per_type=2).satisfied  # gate_j and up_j interact
    False
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import torch

from slewguard.models.families import FAMILIES
from slewguard.models.train import Batch

# Families whose FFN is gated by architecture (act(gate(x)) * up(x)) whatever hidden_act says:
# the registered ones with a gate (llama, qwen2) and others the static check knows by name.
GATED_FFN_FAMILIES = frozenset({"qwen3", "mistral", "mixtral", "gemma", "gemma2", "phi3",
                                "chatglm", "olmo", "olmo2", "granite", "cohere",
                                *(name for name, family in FAMILIES.items() if family.gated_ffn)})
GATED_ACTIVATIONS = frozenset({"swiglu", "geglu", "reglu", "gated-gelu", "gated-silu"})


@dataclass(frozen=True)
class StaticVerdict:
    """The paper's two config questions and their answer, with the facts behind it."""

    model_type: str
    shared_kv: bool
    kv_group_size: int
    gated_ffn: bool
    evidence: tuple[str, ...]

    @property
    def satisfied(self) -> bool:
        return not (self.shared_kv or self.gated_ffn)


def static_check(config: Any) -> StaticVerdict:
    """Answer the two SIA questions from a transformers config (or a plain dict of one).

    Example:
        >>> from transformers import BertConfig
        >>> static_check(BertConfig()).satisfied
        True
    """
    get = config.get if isinstance(config, Mapping) else (lambda k, d=None: getattr(config, k, d))
    model_type = str(get("model_type", "unknown"))
    heads = get("num_attention_heads", None) or get("n_head", None)
    if heads is None:
        raise ValueError(f"config of model_type={model_type!r} has no num_attention_heads/n_head: "
                         "pass a transformer config")
    kv_heads = get("num_key_value_heads", None) or (1 if get("multi_query", False) else heads)
    layer_heads = get("slewguard_layer_heads", None) or [heads]
    layer_kv = get("slewguard_layer_kv_heads", None) or [kv_heads] * len(layer_heads)
    groups = [h // kv for h, kv in zip(layer_heads, layer_kv, strict=True) if kv]
    group_size = max(groups) if groups else 1
    evidence = [f"attention: {heads} query heads over {kv_heads} key/value heads "
                f"(group size D = {group_size})" + (" -> shared KV projections" if group_size > 1
                                                    else " -> each head owns its K/V")]
    act = str(get("hidden_act", None) or get("activation_function", None)
              or get("feed_forward_proj", None) or "unknown").lower()
    gated = model_type in GATED_FFN_FAMILIES or act in GATED_ACTIVATIONS
    if gated:
        why = (f"model_type {model_type!r} has a gate_proj/up_proj FFN" if model_type
               in GATED_FFN_FAMILIES else f"activation {act!r} is gated")
        evidence.append(f"FFN: gated ({why}, act={act}): gate_j * up_j, removing one "
                        "zeroes the pair")
    else:
        evidence.append(f"FFN: not gated (act={act}): each channel is one up row + one down column")
    return StaticVerdict(model_type, group_size > 1, group_size, gated, tuple(evidence))


# ----------------------------------------------------------------------------------------------
# Measured check: masking hooks on the family's attention and FFN modules.

@dataclass(frozen=True)
class _LayerSites:
    value: torch.nn.Module          # output holds V (GPT-2: the packed q|k|v output)
    value_offset: int               # where V starts in that output
    out_proj: torch.nn.Module       # input holds the concatenated head outputs
    ffn_in: tuple[torch.nn.Module, ...]  # (fc,) or (gate, up)
    head_dim: int
    heads: int
    kv_heads: int


def _layer_sites(model: torch.nn.Module, layer: int) -> _LayerSites:
    model_type = model.config.model_type
    cfg = model.config
    family = FAMILIES.get(model_type)
    if family is None:
        raise ValueError(f"measured SIA check: model_type={model_type!r} is not supported; "
                         f"supported: {', '.join(FAMILIES)}")
    block = family.layer_stack(model)[layer]
    value, out_proj = family.module(block, family.value), family.module(block, family.out_proj)
    ffn_in = tuple(family.module(block, path) for path in family.ffn_in)
    # Conv1D weight is (in, out): in = n_heads * hd; its fused output is [q | k | v].
    attn_width = out_proj.weight.shape[0] if family.conv1d else out_proj.in_features
    offset = 2 * attn_width if family.conv1d else 0
    value_width = value.out_features if family.gqa else attn_width
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return _LayerSites(value, offset, out_proj, ffn_in, head_dim, attn_width // head_dim,
                       value_width // head_dim)


class Part(StrEnum):
    """What the measured check removes, one at a time: a head (with its value projection), or
    a gated FFN channel's gate or up half, or a plain FFN channel. Not ``kinds.Unit``: the
    gate and the up half of one channel are separate parts here, the SIA's question.

    Plain text ("head") works wherever a part is taken (``masked``).
    """

    HEAD = "head"
    GATE = "gate"
    UP = "up"
    CHANNEL = "channel"


Component = tuple[Part, int, int]  # (part, layer, index)


def _zero_plan(model: torch.nn.Module, components: Sequence[Component]):
    """[(module, "in" | "out", [(start, stop), ...])]: the activation slices components own."""
    plan: dict[tuple[int, str], tuple[torch.nn.Module, str, list[tuple[int, int]]]] = {}

    def add(module: torch.nn.Module, where: str, start: int, stop: int) -> None:
        plan.setdefault((id(module), where), (module, where, []))[2].append((start, stop))

    for kind, layer, index in components:
        sites = _layer_sites(model, layer)
        hd = sites.head_dim
        if kind == Part.HEAD:  # its output and its value projection (the whole KV group: GQA)
            group = index // (sites.heads // sites.kv_heads)
            add(sites.out_proj, "in", index * hd, (index + 1) * hd)
            add(sites.value, "out", sites.value_offset + group * hd,
                sites.value_offset + (group + 1) * hd)
        elif kind in (Part.GATE, Part.CHANNEL):
            add(sites.ffn_in[0], "out", index, index + 1)
        elif kind == Part.UP:
            add(sites.ffn_in[-1], "out", index, index + 1)
        else:
            raise ValueError(f"component kind={kind!r} is not {'/'.join(Part)}")
    return list(plan.values())


def _zeroed(tensor: torch.Tensor, slices: list[tuple[int, int]]) -> torch.Tensor:
    tensor = tensor.clone()
    for start, stop in slices:
        tensor[..., start:stop] = 0
    return tensor


@contextlib.contextmanager
def masked(model: torch.nn.Module, components: Sequence[Component]) -> Iterator[None]:
    """Temporarily remove ``components`` by zeroing their activations with hooks.

    Example:
        >>> from slewguard.models.backbones import tiny_config
        >>> model = FAMILIES["llama"].model_class(tiny_config("llama"))
        >>> batches = [{"input_ids": torch.randint(4, 64, (4, 8)), "labels": torch.arange(4) % 2}]
        >>> base = calibration_loss(model, batches)
        >>> with masked(model, [(Part.HEAD, 1, 0), ("gate", 1, 17)]):  # head 0 takes KV group 0
        ...     calibration_loss(model, batches) != base
        True
        >>> calibration_loss(model, batches) == base  # the hooks are gone, the weights never moved
        True
    """
    handles = []
    for module, where, slices in _zero_plan(model, components):
        if where == "in":
            hook = module.register_forward_pre_hook(
                lambda _m, args, s=slices: (_zeroed(args[0], s), *args[1:]))
        else:
            hook = module.register_forward_hook(lambda _m, _a, out, s=slices: _zeroed(out, s))
        handles.append(hook)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def calibration_loss(model: torch.nn.Module, batches: Sequence[Batch]) -> float:
    """Mean task loss of ``model`` over ``batches`` (each carries ``labels``).

    Example:
        >>> from slewguard.models.backbones import tiny_config
        >>> model = FAMILIES["bert"].model_class(tiny_config("bert"))  # untrained, 2 classes
        >>> batches = [{"input_ids": torch.randint(4, 64, (4, 8)), "labels": torch.arange(4) % 2}]
        >>> round(calibration_loss(model, batches), 1)  # about ln 2: a coin toss
        0.7
    """
    if not batches or "labels" not in batches[0]:
        raise ValueError("batches must be a non-empty list of dicts with 'labels' (the task loss)")
    model.eval()
    with torch.no_grad():
        return float(sum(float(model(**b).loss) for b in batches) / len(batches))


@dataclass
class MeasuredVerdict:
    """Interaction statistics per pair type, ranking stability per component set, verdict."""

    pair_stats: dict[str, dict[str, float]]
    ranking: dict[str, dict[str, float]]
    threshold: float
    base_loss: float
    evidence: list[str] = field(default_factory=list)

    @property
    def satisfied(self) -> bool:
        return all(s["interaction_ratio"] <= self.threshold for s in self.pair_stats.values())


class _LossCache:
    """Calibration loss with a set of components masked; single removals are cached."""

    def __init__(self, model: torch.nn.Module, batches: Sequence[Batch]) -> None:
        self.model, self.batches, self.cache = model, batches, {}

    def __call__(self, *components: Component) -> float:
        key = tuple(sorted(components))
        if key not in self.cache:
            with masked(self.model, list(key)):
                self.cache[key] = calibration_loss(self.model, self.batches)
        return self.cache[key]


def _pair_types(sites: _LayerSites, layer: int, n_channels: int, count: int,
                rng: random.Random) -> dict[str, list[tuple[Component, Component]]]:
    """Sampled component pairs of one layer, keyed by what ties them (or does not)."""
    group = sites.heads // sites.kv_heads
    heads = range(sites.heads)
    pairs: dict[str, list[tuple[int, int]]] = {}
    all_pairs = [(i, j) for i in heads for j in heads if i < j]
    if group > 1:
        pairs["heads_same_kv_group"] = [(i, j) for i, j in all_pairs if i // group == j // group]
        pairs["heads_other_kv_group"] = [(i, j) for i, j in all_pairs if i // group != j // group]
    else:
        pairs["heads_mha"] = all_pairs
    out = {k: [((Part.HEAD, layer, i), (Part.HEAD, layer, j))
               for i, j in rng.sample(v, min(count, len(v)))] for k, v in pairs.items() if v}
    channels = rng.sample(range(n_channels), min(2 * count, n_channels))
    half = len(channels) // 2
    if len(sites.ffn_in) == 2:
        out["gate_up_same_channel"] = [((Part.GATE, layer, c), (Part.UP, layer, c))
                                       for c in channels[:half]]
        out["gate_up_other_channels"] = [((Part.GATE, layer, a), (Part.UP, layer, b))
                                         for a, b in zip(channels[:half], channels[half:],
                                                         strict=False)]
    else:
        out["channels"] = [((Part.CHANNEL, layer, a), (Part.CHANNEL, layer, b))
                           for a, b in zip(channels[:half], channels[half:], strict=False)]
    return out


def _interaction(loss: _LossCache, pairs: list[tuple[Component, Component]]) -> dict[str, float]:
    base = loss()
    deltas = [loss(i, j) - loss(i) - loss(j) + base for i, j in pairs]
    singles = [abs(loss(c) - base) for pair in pairs for c in pair]
    mean_delta = sum(abs(d) for d in deltas) / len(deltas)
    mean_single = sum(singles) / len(singles)
    return {"n_pairs": float(len(pairs)), "mean_abs_delta": mean_delta,
            "mean_abs_single": mean_single,
            "interaction_ratio": mean_delta / max(mean_single, 1e-8)}


def _ranking_stability(loss: _LossCache, components: list[Component],
                       top_k: int) -> dict[str, float]:
    """Leave-one-out importance before/after removing the top-k; rank correlation of the rest."""
    from scipy.stats import kendalltau, spearmanr

    base = loss()
    before = {c: loss(c) - base for c in components}
    top = sorted(components, key=before.get, reverse=True)[:top_k]
    rest = [c for c in components if c not in top]
    masked_base = loss(*top)
    after = {c: loss(*top, c) - masked_base for c in rest}
    xs, ys = [before[c] for c in rest], [after[c] for c in rest]
    return {"n_components": float(len(components)), "top_k": float(top_k),
            "spearman": float(spearmanr(xs, ys).statistic),
            "kendall": float(kendalltau(xs, ys).statistic)}


def measured_check(
    model: torch.nn.Module,
    batches: Sequence[Batch],
    *,
    layers: Sequence[int] | None = None,
    pairs_per_type: int = 8,
    top_k_fraction: float = 0.25,
    threshold: float = 0.5,
    seed: int = 0,
) -> MeasuredVerdict:
    """Measure component interactions and ranking stability on calibration ``batches``.

    ``layers`` defaults to the middle layer. The verdict: violated when, for some pair type, the
    mean |Delta_ij| exceeds ``threshold`` times the mean single-removal effect |L(-i) - L|.

    Example:
        >>> from slewguard.models.backbones import tiny_config
        >>> model = FAMILIES["llama"].model_class(tiny_config("llama"))  # 4 heads, 2 KV groups
        >>> batches = [{"input_ids": torch.randint(4, 64, (4, 8)), "labels": torch.arange(4) % 2}]
        >>> verdict = measured_check(model, batches, pairs_per_type=4)
        >>> print(*verdict.pair_stats)  # what ties each pair type, or does not
        heads_same_kv_group heads_other_kv_group gate_up_same_channel gate_up_other_channels
        >>> round(verdict.pair_stats["gate_up_same_channel"]["interaction_ratio"], 6)
        1.0
    """
    n_layers = int(model.config.num_hidden_layers)
    layers = [n_layers // 2] if layers is None else list(layers)
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad:
        raise ValueError(f"layers={bad} out of range: the model has {n_layers} layers")
    if not 0 < top_k_fraction < 1:
        raise ValueError(f"top_k_fraction={top_k_fraction} must be in (0, 1)")
    rng = random.Random(seed)
    loss = _LossCache(model, batches)
    pooled: dict[str, list[tuple[Component, Component]]] = {}
    for layer in layers:
        sites = _layer_sites(model, layer)
        for kind, pairs in _pair_types(sites, layer, _width(sites.ffn_in[0]), pairs_per_type,
                                       rng).items():
            pooled.setdefault(kind, []).extend(pairs)
    stats = {kind: _interaction(loss, pairs) for kind, pairs in pooled.items() if pairs}
    layer = layers[0]
    sites = _layer_sites(model, layer)
    head_components = [(Part.HEAD, layer, i) for i in range(sites.heads)]
    channels = rng.sample(range(_width(sites.ffn_in[0])), min(16, _width(sites.ffn_in[0])))
    parts = (Part.GATE, Part.UP) if len(sites.ffn_in) == 2 else (Part.CHANNEL,)
    ffn_components = [(part, layer, c) for c in channels for part in parts]
    ranking = {}
    for name, components in (("heads", head_components), ("ffn", ffn_components)):
        if len(components) >= 4:
            top_k = max(1, int(round(top_k_fraction * len(components))))
            ranking[name] = _ranking_stability(loss, components, top_k)
    verdict = MeasuredVerdict(stats, ranking, threshold, loss())
    verdict.evidence.extend(
        f"{kind}: mean |Delta| {s['mean_abs_delta']:.4g} vs mean single effect "
        f"{s['mean_abs_single']:.4g} -> ratio {s['interaction_ratio']:.2f} "
        f"({int(s['n_pairs'])} pairs)" for kind, s in stats.items())
    verdict.evidence.extend(
        f"ranking ({name}, layer {layer}): Spearman {r['spearman']:.2f}, Kendall "
        f"{r['kendall']:.2f} after removing the top {int(r['top_k'])} of "
        f"{int(r['n_components'])}" for name, r in ranking.items())
    return verdict


def _width(module: torch.nn.Module) -> int:
    """Output features of a Linear or a GPT-2 Conv1D (weight stored (in, out))."""
    return module.out_features if isinstance(module, torch.nn.Linear) else module.weight.shape[1]


def format_report(static: StaticVerdict, measured: MeasuredVerdict | None = None) -> str:
    """Human-readable static (+ measured) verdicts, one fact a line.

    Example:
        >>> from transformers import BertConfig
        >>> format_report(static_check(BertConfig())).splitlines()[0]
        'SIA static check (bert): satisfied'
    """
    word = "satisfied" if static.satisfied else "VIOLATED"
    lines = [f"SIA static check ({static.model_type}): {word}"]
    lines += [f"  - {e}" for e in static.evidence]
    if measured is not None:
        word = "satisfied" if measured.satisfied else "VIOLATED"
        lines.append(f"SIA measured check (calibration loss {measured.base_loss:.4f}, threshold "
                     f"ratio {measured.threshold}): {word}")
        lines += [f"  - {e}" for e in measured.evidence]
    return "\n".join(lines)
