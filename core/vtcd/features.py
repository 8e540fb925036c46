"""Per (layer, head) features on the token grid: the sites VTCD reads and masks.

A *site* is the module whose output holds a layer's feature: the ``q``/``k``/``v`` ``nn.Linear`` of
an attention block (separate, or a fused ``qkv`` whose output is sliced), the block output itself,
or, for CNN video models, the layer's ``(B, C, T', H', W')`` map, split into channel blocks that
play the part of heads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from core.batching import BatchSize
from core.errors import LayerError
from core.models import ModelBundle, capture, resolve_layers
from core.precision import autocast, to_fp32

Inputs = torch.Tensor | tuple[torch.Tensor, ...]

_QKV = {"query": ("q", "query", "q_proj"), "key": ("k", "key", "k_proj"), "value": ("v", "value", "v_proj")}
_FUSED_INDEX = {"query": 0, "key": 1, "value": 2}
_ATTN = ("attn", "attention", "self_attn", "attention.attention", "attention.self", "self_attention")
_HEAD_ATTRS = ("heads", "num_heads", "num_attention_heads", "n_heads")


@dataclass(frozen=True)
class FeatureSite:
    """Where one layer's feature lives.

    ``module`` is hooked; its output is tokens ``(B, num_prefix + N, *)`` (``layout="tokens"``,
    ``N`` time-major on ``grid``) or a map ``(B, *, T', H', W')`` (``layout="map"``). The feature is
    the ``channels`` channels from ``offset`` on (a fused qkv output holds three), split into
    ``heads`` equal chunks of ``head_dim``.
    """

    layer: str
    module: str
    kind: str
    layout: Literal["tokens", "map"]
    heads: int
    channels: int
    offset: int
    grid: tuple[int, int, int]
    num_prefix: int = 0

    @property
    def head_dim(self) -> int:
        return self.channels // self.heads

    @property
    def n_tokens(self) -> int:
        return int(np.prod(self.grid))


def _head_count(modules: Mapping[str, nn.Module], names: Sequence[str]) -> int | None:
    for name in names:
        mod = modules.get(name)
        if mod is None:
            continue
        for attr in _HEAD_ATTRS:
            value = getattr(mod, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        cfg = getattr(mod, "config", None)
        value = getattr(cfg, "num_attention_heads", None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _find_projection(modules: Mapping[str, nn.Module], layer: str, kind: str) -> tuple[str, bool, list[str]]:
    """(module name, fused qkv?, candidate attention modules to read the head count from)."""
    parent = layer.rpartition(".")[0]
    if isinstance(modules[layer], nn.Linear):  # the projection itself was named
        return layer, layer.endswith("qkv"), [parent, parent.rpartition(".")[0]]
    for attn in _ATTN:
        for short in _QKV[kind]:
            name = f"{layer}.{attn}.{short}"
            if isinstance(modules.get(name), nn.Linear):
                return name, False, [f"{layer}.{attn}", layer]
        name = f"{layer}.{attn}.qkv"
        if isinstance(modules.get(name), nn.Linear):
            return name, True, [f"{layer}.{attn}", layer]
    raise LayerError(f"layer {layer!r} has no {kind} projection (looked for <layer>.attn.k, .qkv, "
                     f".attention.attention.key, ...); use feature='block' or name the projection itself")


@torch.no_grad()
def _output_shapes(bundle: ModelBundle, names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    with capture(bundle, names) as acts:
        bundle(bundle.dummy_input(1))
    missing = [n for n in names if n not in acts]
    if missing:
        raise LayerError(f"{bundle.spec}: layers {missing} did not run in a forward pass")
    return {n: tuple(acts[n].shape) for n in names}


def feature_sites(bundle: ModelBundle, layers: Sequence[str], feature: str = "key",
                  channel_blocks: int | None = None) -> list[FeatureSite]:
    """Resolve each layer to its :class:`FeatureSite` (one dummy forward reads the output shapes).

    Transformer layers (token outputs) need ``bundle.token_grid`` ``(T', H', W')``; the head count
    comes from the attention module (``heads``/``num_heads`` attribute) unless ``channel_blocks``
    sets it. Map outputs ``(B, C, T', H', W')`` are split into ``channel_blocks`` blocks (default 1);
    a CNN layer has no q/k/v, so its output map is the feature whatever ``feature`` asks for (the
    site's ``kind`` says ``block``).
    """
    modules = dict(bundle.model.named_modules())
    resolve_layers(bundle.model, layers, bundle.spec)
    plan: list[tuple[str, str, bool, list[str]]] = []
    missing: dict[str, LayerError] = {}
    for layer in layers:
        if feature != "block":
            try:
                plan.append((layer, *_find_projection(modules, layer, feature)))
                continue
            except LayerError as e:  # fine for a CNN layer: its output map is the feature
                missing[layer] = e
        plan.append((layer, layer, False, [f"{layer}.{a}" for a in _ATTN] + [layer]))
    shapes = _output_shapes(bundle, sorted({p[1] for p in plan}))
    sites = []
    for layer, module, fused, head_sources in plan:
        shape = shapes[module]
        if layer in missing and len(shape) != 5:
            raise missing[layer]
        kind = "block" if layer in missing else feature
        if len(shape) == 3:
            grid = bundle.token_grid
            if grid is None or len(grid) != 3:
                raise LayerError(f"{bundle.spec}: token outputs need a (T', H', W') token grid; give it with "
                                 "#grid=T,H,W in the model spec")
            width = shape[2] // 3 if fused else shape[2]
            offset = _FUSED_INDEX[feature] * width if fused else 0
            heads = channel_blocks or _head_count(modules, head_sources)
            if heads is None:
                raise LayerError(f"{bundle.spec}: cannot tell the head count of {layer!r}; set channel_blocks")
            sites.append(FeatureSite(layer, module, kind, "tokens", heads, width, offset, tuple(grid),
                                     bundle.num_prefix_tokens))
        elif len(shape) == 5:
            heads = channel_blocks or 1
            sites.append(FeatureSite(layer, module, kind, "map", heads, shape[1], 0, tuple(shape[2:])))
        else:
            raise LayerError(f"{bundle.spec}: layer {layer!r} outputs shape {shape}; VTCD needs tokens (B, N, C) "
                             "or a space-time map (B, C, T, H, W)")
        if sites[-1].channels % sites[-1].heads:
            raise LayerError(f"{layer!r}: {sites[-1].channels} channels do not split into {sites[-1].heads} heads")
    return sites


def site_feature(out: torch.Tensor, site: FeatureSite) -> torch.Tensor:
    """A site module's output as ``(B, heads, T', H', W', head_dim)``."""
    if site.layout == "tokens":
        body = out[:, site.num_prefix:, site.offset:site.offset + site.channels]
        b, n, _ = body.shape
        if n != site.n_tokens:
            raise LayerError(f"{site.module}: {n} tokens do not fit the token grid {site.grid}")
        return body.reshape(b, *site.grid, site.heads, site.head_dim).permute(0, 4, 1, 2, 3, 5)
    b = out.shape[0]
    return out.reshape(b, site.heads, site.head_dim, *site.grid).permute(0, 1, 3, 4, 5, 2)


def batch_size_of(x: Inputs) -> int:
    return int((x[0] if isinstance(x, (tuple, list)) else x).shape[0])


def take(x: Inputs, index: slice | int) -> Inputs:
    """Rows of a model input (a tensor or a tuple of tensors); an int keeps the batch axis."""
    if isinstance(index, int):
        index = slice(index, index + 1)
    if isinstance(x, (tuple, list)):
        return tuple(t[index] for t in x)
    return x[index]


def repeat(x: Inputs, n: int) -> Inputs:
    """A one-row input repeated ``n`` times along the batch axis."""
    if isinstance(x, (tuple, list)):
        return tuple(t.expand(n, *t.shape[1:]) for t in x)
    return x.expand(n, *x.shape[1:])


def prepare_videos(bundle: ModelBundle, videos: Sequence[np.ndarray] | Inputs) -> Inputs:
    """uint8 clips ``(T, H, W, 3)`` as the model's input batch ``(V, 3, T, H, W)`` (fitted to its frame
    count and size, normalised), on the model's device; a tensor (or tuple) is passed through."""
    if isinstance(videos, torch.Tensor) or (isinstance(videos, tuple) and isinstance(videos[0], torch.Tensor)):
        return videos
    from core.data.videos import preprocess_clips

    x = preprocess_clips(list(videos), bundle.preprocessing)
    if isinstance(x, tuple):
        return tuple(t.to(bundle.device) for t in x)
    return x.to(bundle.device)


@torch.no_grad()
def extract_features(bundle: ModelBundle, x: Inputs, sites: Sequence[FeatureSite], batch_size: int | BatchSize = 16,
                     precision: str = "fp32", out_dir: Path | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Features of every site for a batch of videos, one forward per ``batch_size`` videos (halved while
    a forward runs out of memory), in ``precision`` (:mod:`core.precision`).

    Returns per site a float32 CPU tensor ``(V, heads, T', H', W', head_dim)``, and the logits ``(V, K)``.
    ``out_dir``: each site's features are written batch by batch into ``out_dir/features-NN.npy``
    (:func:`numpy.lib.format.open_memmap`) and the tensors returned are views of those memory maps, so
    only one batch is held in RAM; the caller owns the folder (and deletes it).
    """
    modules = sorted({s.module for s in sites})
    bs = batch_size if isinstance(batch_size, BatchSize) else BatchSize(batch_size, "clips", bundle.device)
    n = batch_size_of(x)
    maps: list[np.ndarray] = []

    def run(start: int, stop: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        logits = bundle(take(x, slice(start, stop))).float().cpu()
        feats = [to_fp32(site_feature(acts[site.module], site)).cpu() for site in sites]
        if out_dir is None:
            return logits, feats
        for i, f in enumerate(feats):
            if len(maps) <= i:
                maps.append(np.lib.format.open_memmap(Path(out_dir) / f"features-{i:02d}.npy", mode="w+",
                                                      dtype=np.float32, shape=(n, *f.shape[1:])))
            maps[i][start:stop] = f.numpy()
        return logits, []

    with capture(bundle, modules) as acts, autocast(precision, bundle.device):
        parts = bs.run(n, run)
    logits = torch.cat([p[0] for p in parts])
    if out_dir is not None:
        for m in maps:
            m.flush()
        return [torch.from_numpy(m) for m in maps], logits
    return [torch.cat([p[1][i] for p in parts]) for i in range(len(sites))], logits


def layers_in_run_order(bundle: ModelBundle, x: Inputs, names: Sequence[str]) -> list[str]:
    """The layers ``names`` sorted by when their modules first run in one forward pass of the first input
    (names that never run last). Not :func:`core.vcc.forward.execution_order`, which orders a model's layers."""
    order: list[str] = []
    targets = resolve_layers(bundle.model, names, bundle.spec)
    handles = []

    def make(name: str) -> Any:
        def hook(*_: Any) -> None:
            if name not in order:
                order.append(name)
        return hook

    try:
        for name, mod in targets.items():
            handles.append(mod.register_forward_pre_hook(make(name)))
        with torch.no_grad():
            bundle(take(x, 0))
    finally:
        for h in handles:
            h.remove()
    return order + [n for n in names if n not in order]
