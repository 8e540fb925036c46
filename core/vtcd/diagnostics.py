"""Attention diagnostics of a video transformer, per block: how much work its attention does.

CRIS ranks concepts by what masking their keys does to the output. When a block's attention is
nearly uniform, or its whole attention branch can be removed with no effect, every concept of that
block ranks near zero: a property of the model, not of the masking. These numbers say which it is.
Per block (a layer as VTCD addresses it), averaged over the videos:

- ``entropy``: the entropy of ``softmax(q k^T / sqrt(d_head))`` over the ``N`` keys of the token grid
  (prefix tokens left out), divided by ``log N``, averaged over heads and queries: 1 is uniform
  attention, every token averaging all the others.
- ``branch``: the change in P(target) when the block's attention branch output is zeroed (the
  residual stream carries on unchanged).
- ``keys_zero``: the change in P(target) when the keys of a random ``rho`` of the tokens (all heads)
  are zeroed, as CRIS removes a concept: a zero key still takes part in the softmax, with logit 0.
- ``keys_removed``: the same tokens removed from the softmax (``-inf`` logits), through the model's
  ``scaled_dot_product_attention`` call; None when the model does not attend through it. This is
  a diagnostic: CRIS itself zeroes keys, as the released code does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.jsonsafe import nan_to_null
from core.models import ModelBundle
from core.models.hooks import hooks
from core.vtcd.features import FeatureSite, Inputs, batch_size_of, extract_features, repeat, take
from core.vtcd.masking import apply_keep, first_tensor, metric_values, replace_output

ATTENTION_NAMES = ("attn", "attention", "self_attn", "self_attention")


@dataclass
class BlockDiagnostics:
    """One block: the normalised attention ``entropy`` (and per head), and mean (signed, and absolute)
    changes in P(target) over videos for each removal; None where it could not be measured."""

    layer: str
    attention_module: str
    entropy: float | None
    entropy_heads: list[float] | None
    branch_delta: float
    branch_abs: float
    keys_zero_delta: float
    keys_zero_abs: float
    keys_removed_delta: float | None
    keys_removed_abs: float | None


@dataclass
class AttentionDiagnostics:
    """Per-block diagnostics over ``n_videos`` videos; ``baseline`` the mean unmasked P(target)."""

    metric: str
    rho: float
    n_draws: int
    n_videos: int
    baseline: float
    blocks: list[BlockDiagnostics] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return nan_to_null({**{k: v for k, v in asdict(self).items() if k != "blocks"},
                            "blocks": [asdict(b) for b in self.blocks]})


def attention_module(modules: dict[str, nn.Module], site: FeatureSite) -> str:
    """The module whose output is the block's attention branch: the outermost ancestor of the key
    projection whose name ends in an attention name (``blocks.0.attn`` for ``blocks.0.attn.k``,
    ``encoder.layer.0.attention`` for ``encoder.layer.0.attention.attention.key``)."""
    name = site.module.rpartition(".")[0]
    while True:
        parent = name.rpartition(".")[0]
        if not parent or parent.rpartition(".")[2] not in ATTENTION_NAMES or parent not in modules:
            return name
        name = parent


def attention_entropy(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Normalised entropy of ``softmax(q k^T / sqrt(d))``: ``q``, ``k`` ``(heads, N, d)`` -> ``(heads,)``
    (mean over queries, divided by ``log N``)."""
    n = q.shape[1]
    logits = q.double() @ k.double().transpose(1, 2) / math.sqrt(q.shape[-1])
    logp = torch.log_softmax(logits, dim=-1)
    ent = -(logp.exp() * logp).sum(-1).mean(-1)
    return ent / math.log(n) if n > 1 else torch.zeros_like(ent)


@contextmanager
def sdpa_key_mask(state: dict[str, Any]) -> Iterator[None]:
    """While ``state["mask"]`` (bool ``(B, N_keys)``, True keeps) is set, every call of
    ``torch.nn.functional.scaled_dot_product_attention`` whose key length matches gets ``-inf``
    logits on the removed keys; ``state["calls"]`` counts the calls it changed. Always restored."""
    original = F.scaled_dot_product_attention

    def patched(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
                *args: Any, **kwargs: Any) -> torch.Tensor:
        mask = state.get("mask")
        if mask is not None and k.shape[-2] == mask.shape[-1] and k.shape[0] == mask.shape[0]:
            m = mask[:, None, None, :]
            if attn_mask is None:
                attn_mask = m
            elif attn_mask.dtype == torch.bool:
                attn_mask = attn_mask & m
            else:
                attn_mask = attn_mask.masked_fill(~m, float("-inf"))
            state["calls"] = state.get("calls", 0) + 1
        return original(q, k, v, attn_mask, *args, **kwargs)

    F.scaled_dot_product_attention = patched
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def _probability(bundle: ModelBundle, x: Inputs, target: int) -> np.ndarray:
    return metric_values(bundle(x), target, "probability")


@torch.no_grad()
def attention_diagnostics(bundle: ModelBundle, x: Inputs, key_sites: Sequence[FeatureSite],
                          query_sites: Sequence[FeatureSite] | None, targets: Sequence[int], rho: float = 0.5,
                          n_draws: int = 8, seed: int = 0, batch_size: int = 16,
                          progress: Callable[[int, int], None] | None = None) -> AttentionDiagnostics:
    """Diagnostics of every block of ``key_sites`` (token sites of the keys; ``query_sites`` the queries
    of the same layers, None: no entropy) on the videos ``x`` ``(V, ...)`` for classes ``targets``."""
    modules = dict(bundle.model.named_modules())
    n_videos = batch_size_of(x)
    targets = [int(t) for t in targets]
    base = np.concatenate([_probability(bundle, take(x, v), targets[v]) for v in range(n_videos)])
    out = AttentionDiagnostics("probability", rho, n_draws, n_videos, float(base.mean()))
    entropies: list[np.ndarray | None] = [None] * len(key_sites)
    if query_sites is not None:
        per_video: list[list[torch.Tensor]] = [[] for _ in key_sites]
        for start in range(0, n_videos, batch_size):
            chunk = take(x, slice(start, start + batch_size))
            qf, _ = extract_features(bundle, chunk, query_sites, batch_size)
            kf, _ = extract_features(bundle, chunk, key_sites, batch_size)
            for i in range(len(key_sites)):
                for q, k in zip(qf[i], kf[i], strict=True):  # (heads, T', H', W', d)
                    per_video[i].append(attention_entropy(q.flatten(1, 3), k.flatten(1, 3)))
        entropies = [torch.stack(e).mean(0).numpy() for e in per_video]
    rng = np.random.default_rng([seed, 13])
    state: dict[str, Any] = {"mask": None, "pending": None, "calls": 0, "keep": None, "site": None}

    def zero_branch(_m: nn.Module, _i: Any, output: Any) -> Any:
        return replace_output(output, torch.zeros_like(first_tensor(output)))

    def zero_keys(_m: nn.Module, _i: Any, output: Any) -> Any:
        keep, s = state["keep"], state["site"]
        return replace_output(output, apply_keep(first_tensor(output), s, keep[:, None, :].expand(-1, s.heads, -1)))

    def enter(_m: nn.Module, _a: Any) -> None:
        state["mask"] = state["pending"]

    def leave(_m: nn.Module, _a: Any, _o: Any) -> None:
        state["mask"] = None

    for i, site in enumerate(key_sites):
        attn = attention_module(modules, site)
        n = site.n_tokens
        n_remove = max(1, round(rho * n))
        draws = np.stack([rng.permutation(n) < n_remove for _ in range(n_draws)])  # (D, N) True: removed
        keep = torch.as_tensor(~draws, device=bundle.device)
        state.update(calls=0, site=site, keep=keep.float())
        branch, zeroed, removed = [], [], []
        with hooks([(modules[attn], zero_branch, False)]):
            for v in range(n_videos):
                branch.append(_probability(bundle, take(x, v), targets[v])[0] - base[v])
        prefix = torch.ones(n_draws, site.num_prefix, dtype=torch.bool, device=bundle.device)
        with hooks([(modules[site.module], zero_keys, False)]):
            for v in range(n_videos):
                xv = repeat(take(x, v), n_draws).contiguous()
                zeroed.append(_probability(bundle, xv, targets[v]) - base[v])
        with sdpa_key_mask(state), hooks([(modules[attn], enter, True), (modules[attn], leave, False)]):
            state["pending"] = torch.cat([prefix, keep], dim=1)
            for v in range(n_videos):
                xv = repeat(take(x, v), n_draws).contiguous()
                removed.append(_probability(bundle, xv, targets[v]) - base[v])
        z, r = np.stack(zeroed), np.stack(removed)  # (V, D)
        measured = state["calls"] > 0
        ent = entropies[i]
        out.blocks.append(BlockDiagnostics(
            layer=site.layer, attention_module=attn, entropy=None if ent is None else float(ent.mean()),
            entropy_heads=None if ent is None else [float(e) for e in ent],
            branch_delta=float(np.mean(branch)), branch_abs=float(np.mean(np.abs(branch))),
            keys_zero_delta=float(z.mean()), keys_zero_abs=float(np.abs(z).mean()),
            keys_removed_delta=float(r.mean()) if measured else None,
            keys_removed_abs=float(np.abs(r).mean()) if measured else None))
        if progress is not None:
            progress(i + 1, len(key_sites))
    return out
