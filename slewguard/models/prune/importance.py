"""Importance criteria: one small class each, registered by name in ``IMPORTANCES``.

Layer criteria (``granularity="layer"``) return one 1-D tensor with a score per layer:
``lcr`` (the paper's Layer Contribution Ratio, E[||h_out - h_in|| / ||h_in||]) and
``block_influence`` (ShortGPT, E[1 - cos(h_in, h_out)]). Low scores mean close to the identity.

Unit criteria (``l1``, ``wanda``, ``taylor``) take ``granularity`` = ``"head"``, ``"kv_group"``
or ``"channel"`` and return a list with one 1-D tensor per layer (a score per head, KV group or
FFN channel of that layer, in the surgeon's index order); low scores go first. Scores are
coupling-aware: an MHA head owns its q/k/v rows and o columns; a GQA query head owns its q rows
and o columns only (its k/v are shared); a KV group scores its k/v rows plus all its query
heads; a gated FFN channel scores its gate and up rows with its down column.

``l1`` and ``wanda`` run no backward pass and keep only per-feature activation norms, so they
scale to multi-billion models on one device; ``taylor`` accumulates per-unit |w * dL/dw| batch by
batch and enables gradients on the scored projections only. Scores come back on the CPU in fp32.

Example:
    >>> from slewguard.models.backbones import tiny_config
    >>> from slewguard.models.families import FAMILIES
    >>> model = FAMILIES["llama"].model_class(tiny_config("llama"))  # 2 layers, 4 heads, 2 KV
    >>> batches = [{"input_ids": torch.randint(4, 64, (4, 8))}]
    >>> IMPORTANCES["lcr"]().score(model, batches).shape  # one score per layer
    torch.Size([2])
    >>> [len(s) for s in IMPORTANCES["wanda"]("kv_group").score(model, batches)]  # per layer
    [2, 2]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from typing import ClassVar

import torch
from rich.progress import track
from torch import nn

from slewguard.models.prune.kinds import Unit
from slewguard.models.prune.surgery import Surgeon, surgeon_for

Batch = dict[str, torch.Tensor]
# Plain text, so the error message below lists them as 'head', not <Unit.HEAD: 'head'>.
UNIT_GRANULARITIES = tuple(u.value for u in (Unit.HEAD, Unit.KV_GROUP, Unit.CHANNEL))
EPS = 1e-12


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _inputs(batch: Batch, device: torch.device, labels: bool = False) -> Batch:
    keep = ("input_ids", "attention_mask", "token_type_ids") + (("labels",) if labels else ())
    return {k: v.to(device) for k, v in batch.items() if k in keep}


def _token_mask(batch: Batch) -> torch.Tensor:
    """(B, T) float mask of real tokens."""
    mask = batch.get("attention_mask")
    if mask is None:
        return torch.ones_like(batch["input_ids"], dtype=torch.float32)
    return mask.float()


def _check_batches(batches: Sequence[Batch], name: str) -> None:
    if not batches:
        raise ValueError(f"batches=[] for importance {name!r}: pass at least one calibration batch")


@contextmanager
def _hooks(handles: list[torch.utils.hooks.RemovableHandle]):
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class Importance:
    """Scores components of a model from calibration batches; lower is less important.

    Example:
        >>> from slewguard.models.backbones import tiny_config
        >>> from slewguard.models.families import FAMILIES
        >>> model = FAMILIES["bert"].model_class(tiny_config("bert"))  # 2 layers of 64 channels
        >>> scores = IMPORTANCES["l1"]("channel").score(model)  # weights only: no batches
        >>> [len(s) for s in scores], scores[0].dtype  # one tensor per layer
        ([64, 64], torch.float32)
    """

    name: ClassVar[str] = ""
    needs_backward: ClassVar[bool] = False
    granularity: Unit = Unit.LAYER
    show_progress: bool = False

    def score(self, model: nn.Module, batches: Sequence[Batch]) -> list[torch.Tensor]:
        """Per-layer unit scores (layer criteria: one 1-D tensor over layers), CPU fp32."""
        raise NotImplementedError

    def _batches(self, batches: Sequence[Batch]) -> Iterable[Batch]:
        return track(batches, description=f"importance {self.name}", transient=True,
                     disable=not self.show_progress)


class _LayerSimilarity(Importance):
    """Token-averaged statistic of (layer input, layer output) for every layer."""

    granularity = Unit.LAYER

    def per_token(self, h_in: torch.Tensor, h_out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def score(self, model: nn.Module, batches: Sequence[Batch]) -> torch.Tensor:
        """One score per layer, a 1-D tensor of length ``num_layers``."""
        _check_batches(batches, self.name)
        layers = surgeon_for(model).layers(model)
        totals = torch.zeros(len(layers), dtype=torch.float64)
        state: dict[str, torch.Tensor] = {}

        def hook(index: int) -> Callable:
            def record(module, args, kwargs, output):
                h_in = args[0] if args else kwargs["hidden_states"]
                h_out = output[0] if isinstance(output, tuple) else output
                values = self.per_token(h_in.float(), h_out.float())  # (B, T)
                totals[index] += float((values * state["mask"]).sum())
            return record

        handles = [layer.register_forward_hook(hook(i), with_kwargs=True)
                   for i, layer in enumerate(layers)]
        tokens, device = 0.0, _device(model)
        with _hooks(handles):
            for batch in self._batches(batches):
                inputs = _inputs(batch, device)
                state["mask"] = _token_mask(inputs)
                tokens += float(state["mask"].sum())
                model(**inputs)
        return (totals / max(tokens, 1.0)).float()


class LayerContributionRatio(_LayerSimilarity):
    """LCR_l = E_x[||h_out - h_in|| / ||h_in||] (paper); ~0 for a layer that is the identity."""

    name = "lcr"

    def per_token(self, h_in: torch.Tensor, h_out: torch.Tensor) -> torch.Tensor:
        return (h_out - h_in).norm(dim=-1) / h_in.norm(dim=-1).clamp_min(EPS)


class BlockInfluence(_LayerSimilarity):
    """ShortGPT's block influence: E_x[1 - cos(h_in, h_out)]."""

    name = "block_influence"

    def per_token(self, h_in: torch.Tensor, h_out: torch.Tensor) -> torch.Tensor:
        return 1.0 - nn.functional.cosine_similarity(h_in, h_out, dim=-1, eps=EPS)


def _unit_scores(vectors: dict[str, torch.Tensor | None], granularity: Unit, surgeon: Surgeon,
                 model: nn.Module, layer: int) -> torch.Tensor:
    """Sum per-feature vectors (along each projection's unit axis) into per-unit scores."""
    if granularity == Unit.CHANNEL:
        gate = vectors.get("ffn_gate")
        return vectors["ffn_in"] + vectors["ffn_out"] + (0.0 if gate is None else gate)
    n_heads, n_kv = surgeon.attention_units(model, layer), surgeon.kv_groups(model, layer)
    query = (vectors["q"] + vectors["o"]).view(n_heads, -1).sum(1)
    kv = (vectors["k"] + vectors["v"]).view(n_kv, -1).sum(1)
    if granularity == Unit.HEAD:
        return query + kv if n_heads == n_kv else query  # GQA: shared k/v belong to no one head
    return query.view(n_kv, -1).sum(1) + kv


def _feature_vectors(elementwise: Callable[[str, torch.Tensor], torch.Tensor],
                     weights: dict[str, torch.Tensor | None], names: Sequence[str]
                     ) -> dict[str, torch.Tensor | None]:
    """Row sums for projections whose outputs are units, column sums for o / ffn_out."""
    out: dict[str, torch.Tensor | None] = {}
    for name in names:
        weight = weights.get(name)
        if weight is None:
            out[name] = None
            continue
        values = elementwise(name, weight)
        out[name] = values.sum(0 if name in ("o", "ffn_out") else 1).float().cpu()
    return out


def _names(granularity: Unit) -> tuple[str, ...]:
    if granularity == Unit.CHANNEL:
        return ("ffn_in", "ffn_gate", "ffn_out")
    return ("q", "k", "v", "o")


class _UnitImportance(Importance):
    def __init__(self, granularity: Unit = Unit.HEAD) -> None:
        # plain text ("head") is taken too, and stored as its Unit
        if granularity not in UNIT_GRANULARITIES:
            raise ValueError(f"granularity={granularity!r} is not one of {UNIT_GRANULARITIES} "
                             f"for importance {self.name!r}; layer scores come from 'lcr'")
        self.granularity = Unit(granularity)


class L1(_UnitImportance):
    """Weight magnitude: sum of |w| over every weight a unit owns (the paper's SIA criterion)."""

    name = "l1"

    @torch.no_grad()
    def score(self, model: nn.Module, batches: Sequence[Batch] = ()) -> list[torch.Tensor]:
        """Per-layer unit scores; ``batches`` are not used."""
        surgeon = surgeon_for(model)
        scores = []
        for layer in range(surgeon.num_layers(model)):
            vectors = _feature_vectors(lambda _, w: w.abs(), surgeon.projections(model, layer),
                                       _names(self.granularity))
            scores.append(_unit_scores(vectors, self.granularity, surgeon, model, layer))
        return scores


class Wanda(_UnitImportance):
    """Activation-weighted magnitude |W_ij| * ||X_j|| summed per unit (Wanda-sp / FLAP style).

    ||X_j|| is the L2 norm over calibration tokens of input feature j of each projection, so a
    unit scores high when both its weights and the activations they read or write are large.
    """

    name = "wanda"

    @torch.no_grad()
    def score(self, model: nn.Module, batches: Sequence[Batch]) -> list[torch.Tensor]:
        _check_batches(batches, self.name)
        surgeon = surgeon_for(model)
        squares = self._collect_input_squares(model, surgeon, batches)
        scores = []
        for layer in range(surgeon.num_layers(model)):
            norms = {key[1]: value.sqrt() for key, value in squares.items() if key[0] == layer}

            def weighted(name: str, weight: torch.Tensor, norms=norms) -> torch.Tensor:
                source = {"k": "q", "v": "q", "ffn_gate": "ffn_in"}.get(name, name)
                return weight.abs() * norms[source].to(weight.device, weight.dtype)[None, :]

            vectors = _feature_vectors(weighted, surgeon.projections(model, layer),
                                       _names(self.granularity))
            scores.append(_unit_scores(vectors, self.granularity, surgeon, model, layer))
        return scores

    def _collect_input_squares(self, model: nn.Module, surgeon: Surgeon,
                               batches: Sequence[Batch]) -> dict[tuple[int, str], torch.Tensor]:
        """Sum over real tokens of x_j^2 at the input of each scored projection (fp32, device)."""
        hooked = ("q", "o") if self.granularity != Unit.CHANNEL else ("ffn_in", "ffn_out")
        squares: dict[tuple[int, str], torch.Tensor] = {}
        state: dict[str, torch.Tensor] = {}

        def hook(key: tuple[int, str]) -> Callable:
            def record(module, args):
                x = args[0].float()
                mask = state["mask"].to(x.device)
                value = (x.pow(2) * mask[..., None]).sum(dim=tuple(range(x.dim() - 1)))
                squares[key] = squares[key] + value if key in squares else value
            return record

        handles = []
        for layer in range(surgeon.num_layers(model)):
            mods = surgeon.modules(model, layer)
            handles += [mods[name].register_forward_pre_hook(hook((layer, name)))
                        for name in hooked]
        device = _device(model)
        with _hooks(handles):
            for batch in self._batches(batches):
                inputs = _inputs(batch, device)
                state["mask"] = _token_mask(inputs)
                model(**inputs)
        return squares


class Taylor(_UnitImportance):
    """First-order Taylor |w * dL/dw| summed per unit, accumulated batch by batch (LLM-Pruner)."""

    name = "taylor"
    needs_backward = True

    def score(self, model: nn.Module, batches: Sequence[Batch]) -> list[torch.Tensor]:
        _check_batches(batches, self.name)
        if any("labels" not in batch for batch in batches):
            raise ValueError("importance 'taylor' needs 'labels' in every batch: it "
                             "back-propagates the classification loss")
        surgeon = surgeon_for(model)
        n_layers = surgeon.num_layers(model)
        names = _names(self.granularity)
        scored = {p for layer in range(n_layers) for name, m in
                  surgeon.modules(model, layer).items() if name in names for p in [m.weight]}
        flags = {p: p.requires_grad for p in model.parameters()}
        scores: list[torch.Tensor | float] = [0.0] * n_layers
        device = _device(model)
        try:
            for p in model.parameters():
                p.requires_grad_(p in scored)
                p.grad = None
            for batch in self._batches(batches):
                model(**_inputs(batch, device, labels=True)).loss.backward()
                for layer in range(n_layers):
                    scores[layer] = scores[layer] + self._layer(model, surgeon, layer, names)
                for p in scored:
                    p.grad = None
        finally:
            for p, flag in flags.items():
                p.requires_grad_(flag)
        return scores

    @torch.no_grad()
    def _layer(self, model: nn.Module, surgeon: Surgeon, layer: int,
               names: Sequence[str]) -> torch.Tensor:
        grads = surgeon.projections(model, layer, attr="grad")
        vectors = _feature_vectors(lambda name, w: (w * grads[name]).abs(),
                                   surgeon.projections(model, layer), names)
        return _unit_scores(vectors, self.granularity, surgeon, model, layer)


IMPORTANCES: dict[str, type[Importance]] = {
    cls.name: cls for cls in (LayerContributionRatio, BlockInfluence, L1, Wanda, Taylor)
}


def importance(name: str, granularity: Unit | None = None) -> Importance:
    """Build a registered criterion by name; ``granularity`` is a ``Unit`` or its text.

    Example:
        >>> importance("taylor", "channel").needs_backward
        True
        >>> importance("wanda", Unit.KV_GROUP).granularity, importance("lcr").granularity
        (<Unit.KV_GROUP: 'kv_group'>, <Unit.LAYER: 'layer'>)
    """
    if name not in IMPORTANCES:
        raise ValueError(f"importance={name!r} is unknown; registered: {', '.join(IMPORTANCES)}")
    cls = IMPORTANCES[name]
    if issubclass(cls, _UnitImportance):
        return cls(granularity or Unit.HEAD)
    if granularity not in (None, Unit.LAYER):
        raise ValueError(f"granularity={granularity!r} for {name!r}: it scores whole layers only")
    return cls()
