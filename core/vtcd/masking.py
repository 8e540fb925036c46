"""Masked forward passes: remove sets of units (concepts or whole heads) by zeroing their feature
(the keys, by default) on the tokens of their support, in their own layer and head.

:func:`masked_metrics` runs many masks per model call: one video is repeated along the batch and every
sample gets its own token mask, applied by forward hooks on the site modules. With ``share_prefix``
the layers before the first masked one run once per batch on the single video, and their output is
repeated at the first masked layer. :func:`masked_metrics_reference` runs one mask per forward pass,
as the released code does, through a separately written hook (index assignment per unit); tests check
that both give the same metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.batching import BatchSize
from core.models import ModelBundle, resolve_layers
from core.models.hooks import hooks
from core.vtcd.features import FeatureSite, Inputs, batch_size_of, repeat

HIGHER_IS_BETTER = {"loss": False, "probability": True, "correct": True, "logit": True}


def metric_values(logits: torch.Tensor, target: int, metric: str) -> np.ndarray:
    """Per-sample task metric ``D`` for the target class: ``(B, K)`` logits -> float64 ``(B,)``."""
    z = logits.double()
    if metric == "loss":
        out = torch.logsumexp(z, dim=1) - z[:, target]
    elif metric == "probability":
        out = torch.softmax(z, dim=1)[:, target]
    elif metric == "correct":
        out = (z.argmax(dim=1) == target).double()
    elif metric == "logit":
        out = z[:, target]
    else:
        raise ValueError(f"unknown metric {metric!r}")
    return out.cpu().numpy()


@dataclass
class UnitGroup:
    """The units of one (site, head): global unit indices ``(U_g,)`` and token supports ``(V, U_g, N)``."""

    site: int
    head: int
    units: np.ndarray
    tokens: torch.Tensor


@dataclass
class UnitSet:
    """Maskable units over ``V`` videos: each is a (site, head) and a set of tokens per video."""

    sites: list[FeatureSite]
    groups: list[UnitGroup]
    n_units: int
    names: list[str] = field(default_factory=list)

    @classmethod
    def from_units(cls, sites: Sequence[FeatureSite], unit_site: Sequence[int], unit_head: Sequence[int],
                   unit_tokens: Sequence[np.ndarray | torch.Tensor], names: Sequence[str] | None = None) -> UnitSet:
        """``unit_tokens[u]`` is a bool ``(V, N_site)`` token support (time-major on the site's grid)."""
        unit_site, unit_head = np.asarray(unit_site, int), np.asarray(unit_head, int)
        groups = []
        for s, h in sorted({(int(s), int(h)) for s, h in zip(unit_site, unit_head, strict=True)}):
            idx = np.flatnonzero((unit_site == s) & (unit_head == h))
            tok = torch.stack([torch.as_tensor(np.asarray(unit_tokens[u]), dtype=torch.bool) for u in idx], dim=1)
            if tok.shape[2] != sites[s].n_tokens:
                raise ValueError(f"unit tokens of {sites[s].layer} have {tok.shape[2]} entries, "
                                 f"the grid {sites[s].n_tokens}")
            groups.append(UnitGroup(s, h, idx, tok))
        names = list(names) if names else [str(i) for i in range(len(unit_site))]
        return cls(list(sites), groups, len(unit_site), names)

    @classmethod
    def heads(cls, sites: Sequence[FeatureSite], n_videos: int,
              heads: Sequence[tuple[int, int]] | None = None) -> UnitSet:
        """Whole heads as units (every token of every video): ``heads`` (site, head) pairs, default all."""
        every = [(s, h) for s, site in enumerate(sites) for h in range(site.heads)]
        pairs = list(heads) if heads is not None else every
        tokens = [np.ones((n_videos, sites[s].n_tokens), bool) for s, _ in pairs]
        names = [f"{sites[s].layer}/h{h}" for s, h in pairs]
        return cls.from_units(sites, [p[0] for p in pairs], [p[1] for p in pairs], tokens, names)

    @property
    def n_videos(self) -> int:
        return int(self.groups[0].tokens.shape[0]) if self.groups else 0


# ------------------------------------------------------------------------------------------------
# Hooks


def apply_keep(out: torch.Tensor, site: FeatureSite, keep: torch.Tensor) -> torch.Tensor:
    """Multiply the site's feature in ``out`` by ``keep`` ``(B, heads, N)`` (1 keeps, 0 zeroes)."""
    if site.layout == "tokens":
        sl = slice(site.offset, site.offset + site.channels)
        body = out[:, site.num_prefix:, sl]
        b, n, _ = body.shape
        scaled = body.reshape(b, n, site.heads, site.head_dim) * keep.transpose(1, 2).unsqueeze(-1).to(body.dtype)
        new = out.clone()
        new[:, site.num_prefix:, sl] = scaled.reshape(b, n, site.channels)
        return new
    b = out.shape[0]
    scaled = out.reshape(b, site.heads, site.head_dim, site.n_tokens) * keep.unsqueeze(2).to(out.dtype)
    return scaled.reshape(out.shape)


def replace_output(output: Any, new: torch.Tensor) -> Any:
    """A module output with its tensor (the first item of a tuple output) replaced by ``new``."""
    if isinstance(output, torch.Tensor):
        return new
    if isinstance(output, tuple):
        return (new, *output[1:])
    raise TypeError(f"cannot mask a module output of type {type(output).__name__}")


def first_tensor(output: Any) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output[0]


def _expand_hook(state: dict[str, Any]) -> Callable[..., Any]:
    def pre(_mod: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        n = state.get("expand")
        if not n or not args or not isinstance(args[0], torch.Tensor) or args[0].shape[0] != 1:
            return None
        return (args[0].expand(n, *args[0].shape[1:]).contiguous(), *args[1:])

    return pre


def prefix_module(sites: Sequence[FeatureSite], order: Sequence[str] | None = None) -> str:
    """The layer whose input is repeated along the batch when the prefix is shared: the first masked layer
    to run (``order``: layer names in execution order; default the order of ``sites``)."""
    layers = [s.layer for s in sites]
    if order:
        ranked = [n for n in order if n in layers]
        if ranked:
            return ranked[0]
    return layers[0]


# ------------------------------------------------------------------------------------------------
# Batched masked forwards


@torch.no_grad()
def masked_metrics(bundle: ModelBundle, x: Inputs, units: UnitSet, video: int, removed: np.ndarray, target: int,
                   metric: str = "loss", batch_size: int | BatchSize = 64, expand_at: str | None = None) -> np.ndarray:
    """Metric ``D`` of the one-video input ``x`` (batch 1) under each removal mask, ``batch_size`` masks
    per forward pass (halved while a pass runs out of memory; a :class:`core.batching.BatchSize` is
    shared, so the size that fitted carries over to the next call).

    ``removed`` bool ``(K, U)``: row k removes those units. ``expand_at``: a layer name whose input is
    repeated along the batch (the rest of the model before it runs once); None repeats the input.
    Returns float64 ``(K,)``. Raises when the model's output does not have one row per mask.
    """
    if batch_size_of(x) != 1:
        raise ValueError("masked_metrics takes one video (batch 1)")
    removed = np.asarray(removed, dtype=bool)
    if removed.ndim != 2 or removed.shape[1] != units.n_units:
        raise ValueError(f"removal masks must be (K, {units.n_units}), got {removed.shape}")
    dev = bundle.device
    modules = resolve_layers(bundle.model, sorted({s.module for s in units.sites}), bundle.spec)
    by_site: dict[int, list[tuple[int, torch.Tensor, torch.Tensor]]] = {}
    for g in units.groups:
        by_site.setdefault(g.site, []).append(
            (g.head, torch.as_tensor(g.units, device=dev), g.tokens[video].to(device=dev, dtype=torch.float32)))
    state: dict[str, Any] = {"keep": {}, "expand": None}

    def make_hook(site_indices: list[int]) -> Callable[..., Any]:
        def hook(_mod: nn.Module, _inp: Any, output: Any) -> Any:
            out = first_tensor(output)
            for s in site_indices:
                keep = state["keep"].get(s)
                if keep is not None:
                    out = apply_keep(out, units.sites[s], keep)
            return replace_output(output, out)

        return hook

    site_of_module: dict[str, list[int]] = {}
    for s in by_site:
        site_of_module.setdefault(units.sites[s].module, []).append(s)
    pairs: list[tuple[nn.Module, Callable[..., Any], bool]] = [
        (modules[m], make_hook(ss), False) for m, ss in site_of_module.items()]
    if expand_at is not None:
        pairs.append((resolve_layers(bundle.model, [expand_at], bundle.spec)[expand_at], _expand_hook(state), True))

    def run(start: int, stop: int) -> np.ndarray:
        r = torch.as_tensor(removed[start:stop], device=dev)
        b = r.shape[0]
        for s, groups in by_site.items():
            site = units.sites[s]
            keep = torch.ones(b, site.heads, site.n_tokens, device=dev)
            for head, idx, tok in groups:
                hit = r[:, idx].float() @ tok  # (B, N): how many removed units cover each token
                keep[:, head] *= (hit <= 0).float()
            state["keep"][s] = keep
        state["expand"] = b if expand_at is not None else None
        logits = bundle(x if expand_at is not None else _contiguous(repeat(x, b)))
        if logits.shape[0] != b:
            raise RuntimeError(f"model output has {logits.shape[0]} rows for {b} masks")
        return metric_values(logits, target, metric)

    bs = batch_size if isinstance(batch_size, BatchSize) else BatchSize(batch_size, "CRIS masks", dev)
    with hooks(pairs):
        parts = bs.run(len(removed), run)
    return np.concatenate(parts) if parts else np.empty(0)


def _contiguous(x: Inputs) -> Inputs:
    return tuple(t.contiguous() for t in x) if isinstance(x, tuple) else x.contiguous()


def run_masks(bundle: ModelBundle, x: Inputs, units: UnitSet, video: int, removed: np.ndarray, target: int,
              metric: str, batch_size: int | BatchSize, expand_at: str | None) -> tuple[np.ndarray, str | None]:
    """:func:`masked_metrics` that falls back to repeating the input when sharing the prefix at
    ``expand_at`` fails for this model (e.g. a second pathway that bypasses that layer). Returns the
    metrics and the ``expand_at`` that worked (None: the input was repeated)."""
    if expand_at is not None:
        try:
            probe = masked_metrics(bundle, x, units, video, removed[:2], target, metric, 2, expand_at)
            check = masked_metrics(bundle, x, units, video, removed[:2], target, metric, 2, None)
            if np.allclose(probe, check, rtol=1e-4, atol=1e-5, equal_nan=True):
                values = masked_metrics(bundle, x, units, video, removed, target, metric, batch_size, expand_at)
                return values, expand_at
        except RuntimeError:
            pass
    return masked_metrics(bundle, x, units, video, removed, target, metric, batch_size, None), None


# ------------------------------------------------------------------------------------------------
# Reference: one mask per forward pass


@torch.no_grad()
def masked_metrics_reference(bundle: ModelBundle, x: Inputs, units: UnitSet, video: int, removed: np.ndarray,
                             target: int, metric: str = "loss") -> np.ndarray:
    """As :func:`masked_metrics`, one forward pass per mask, zeroing each removed unit's tokens in its
    head's channels by index assignment."""
    removed = np.asarray(removed, dtype=bool)
    modules = resolve_layers(bundle.model, sorted({s.module for s in units.sites}), bundle.spec)
    unit_info: dict[int, tuple[int, int, np.ndarray]] = {}
    for g in units.groups:
        for j, u in enumerate(g.units):
            unit_info[int(u)] = (g.site, g.head, np.flatnonzero(g.tokens[video, j].cpu().numpy()))
    current: list[int] = []

    def make_hook(module_name: str) -> Callable[..., Any]:
        def hook(_mod: nn.Module, _inp: Any, output: Any) -> Any:
            out = first_tensor(output).clone()
            for u in current:
                s, head, toks = unit_info[u]
                site = units.sites[s]
                if site.module != module_name or len(toks) == 0:
                    continue
                lo = site.offset + head * site.head_dim
                if site.layout == "tokens":
                    out[:, torch.as_tensor(toks + site.num_prefix), lo:lo + site.head_dim] = 0
                else:
                    t, h, w = np.unravel_index(toks, site.grid)
                    out[:, lo:lo + site.head_dim, torch.as_tensor(t), torch.as_tensor(h), torch.as_tensor(w)] = 0
            return replace_output(output, out)

        return hook

    values = np.empty(len(removed))
    with hooks([(mod, make_hook(name), False) for name, mod in modules.items()]):
        for k, row in enumerate(removed):
            current[:] = [int(u) for u in np.flatnonzero(row)]
            values[k] = metric_values(bundle(x), target, metric)[0]
    return values


def coverage_to_tokens(support: np.ndarray | torch.Tensor, grid: Sequence[int], threshold: float = 0.5) -> torch.Tensor:
    """Supports ``(..., Ts, Hs, Ws)`` on the segmentation grid -> bool ``(..., T', H', W')``: a token is in
    the support when the support covers at least ``threshold`` of its cell (area-weighted)."""
    s = torch.as_tensor(np.asarray(support)).float()
    lead = s.shape[:-3]
    flat = s.reshape(-1, 1, *s.shape[-3:])
    if tuple(flat.shape[-3:]) == tuple(grid):
        cover = flat
    else:
        cover = F.interpolate(flat, size=tuple(int(g) for g in grid), mode="area")
    return (cover >= threshold - 1e-6).reshape(*lead, *grid)
