"""Forward passes the VCC needs: layer order, feature grids, GAP features, flat activations,
gradients of a deep objective with respect to shallower layers, and activation shifts.

Every hook is registered inside :func:`core.models.hooks.hooks` and removed when it exits, also on exceptions.
Passes that only need a shallow layer stop the forward there (a hook raises :class:`_Stop`).
Inside :func:`forward_precision` the model's forward passes autocast (:mod:`core.precision`); what they
return (grids, GAP features, activations, gradients, logits) is float32 either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import LayerError
from core.models import ModelBundle, bundle_gap, resolve_layers, to_feature_map
from core.models.hooks import hooks
from core.models.layers import first_tensor
from core.precision import autocast

_PRECISION: ContextVar[str] = ContextVar("vcc_forward_precision", default="fp32")


@contextmanager
def forward_precision(precision: str) -> Iterator[None]:
    """Run this module's forward passes in ``precision`` (``fp32``, ``bf16``, ``fp16``) inside the block."""
    token = _PRECISION.set(precision)
    try:
        yield
    finally:
        _PRECISION.reset(token)


def _forward(bundle: ModelBundle, x: torch.Tensor) -> torch.Tensor:
    with autocast(_PRECISION.get(), bundle.device):
        return bundle(x)


class _Stop(Exception):
    """Raised by a hook to end a forward pass early (nothing past the layer is needed)."""


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _replace_first(output: Any, new: torch.Tensor) -> Any:
    """``output`` with its activation tensor swapped for ``new`` (tensors, or tuples led by one)."""
    if isinstance(output, torch.Tensor):
        return new
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return type(output)([new, *output[1:]])
    raise LayerError(f"cannot take gradients at a layer whose output is a {type(output).__name__}")


def _run(bundle: ModelBundle, x: torch.Tensor) -> torch.Tensor | None:
    """Logits, or ``None`` when a hook stopped the pass early."""
    try:
        return _forward(bundle, x)
    except _Stop:
        return None


def execution_order(bundle: ModelBundle, layers: Sequence[str]) -> list[str]:
    """``layers`` sorted shallow to deep by when the forward pass reaches them.

    Raises :class:`LayerError` for an unknown layer, a repeated one, or one the forward never runs.
    """
    if len(set(layers)) != len(layers):
        raise LayerError(f"a layer is given twice: {', '.join(layers)}")
    modules = resolve_layers(bundle.model, layers, bundle.spec)
    seen: list[str] = []

    def make(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _i: Any, _o: Any) -> None:
            if name not in seen:
                seen.append(name)
        return hook

    with torch.no_grad(), hooks([(m, make(n)) for n, m in modules.items()]):
        bundle(bundle.dummy_input(1))
    missing = [n for n in layers if n not in seen]
    if missing:
        raise LayerError(f"layer(s) {', '.join(missing)} of {bundle.spec} never run in a forward pass")
    return seen


@torch.no_grad()
def feature_grids(bundle: ModelBundle, x: torch.Tensor, layers: Sequence[str], grid: int,
                  batch_size: int = 32) -> dict[str, np.ndarray]:
    """Each layer's feature map resized to ``grid`` x ``grid``: ``{layer: (B, grid, grid, C)}`` float32.

    Bilinear (antialiased when shrinking), one grid for every layer as the released code does.
    """
    out: dict[str, list[np.ndarray]] = {n: [] for n in layers}
    modules = resolve_layers(bundle.model, layers, bundle.spec)
    store: dict[str, torch.Tensor] = {}

    def make(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _i: Any, o: Any) -> None:
            store[name] = first_tensor(o).detach()
            if len(store) == len(layers):
                raise _Stop
        return hook

    with hooks([(m, make(n)) for n, m in modules.items()]):
        for sl in batches(len(x), batch_size):
            store.clear()
            _run(bundle, x[sl].to(bundle.device))
            for name in layers:
                fmap = to_feature_map(store[name], bundle)
                if fmap.ndim != 4:
                    raise LayerError(f"layer {name} gives a {fmap.ndim - 2}-D map; "
                                     "the VCC needs image maps (B, C, H, W)")
                fmap = F.interpolate(fmap.float(), size=(grid, grid), mode="bilinear", align_corners=False,
                                     antialias=True)
                out[name].append(fmap.permute(0, 2, 3, 1).cpu().numpy())
    return {n: np.concatenate(v) for n, v in out.items()}


@torch.no_grad()
def gap_and_logits(bundle: ModelBundle, x: torch.Tensor, layers: Sequence[str],
                   batch_size: int = 32) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """GAP'd activations ``{layer: (B, C)}`` and logits ``(B, K)``, on the CPU."""
    modules = resolve_layers(bundle.model, layers, bundle.spec)
    store: dict[str, torch.Tensor] = {}

    def make(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _i: Any, o: Any) -> None:
            store[name] = bundle_gap(first_tensor(o).detach(), bundle).float().cpu()
        return hook

    feats: dict[str, list[torch.Tensor]] = {n: [] for n in layers}
    logits = []
    with hooks([(m, make(n)) for n, m in modules.items()]):
        for sl in batches(len(x), batch_size):
            logits.append(_forward(bundle, x[sl].to(bundle.device)).float().cpu())
            for n in layers:
                feats[n].append(store[n])
    return {n: torch.cat(v) for n, v in feats.items()}, torch.cat(logits)


def flatten_activation(t: torch.Tensor, bundle: ModelBundle, drop_prefix_tokens: bool = True) -> torch.Tensor:
    """An activation (or its gradient) flattened per input: ``(B, D)``. Token activations ``(B, N, C)``
    lose their ``bundle.num_prefix_tokens`` leading (CLS, register) tokens first when
    ``drop_prefix_tokens``, as the released code does; other layouts are flattened as they are."""
    if drop_prefix_tokens and t.ndim == 3 and bundle.num_prefix_tokens:
        t = t[:, bundle.num_prefix_tokens:]
    return t.flatten(1)


@torch.no_grad()
def flat_activations(bundle: ModelBundle, x: torch.Tensor, layer: str, batch_size: int = 32,
                     drop_prefix_tokens: bool = True) -> torch.Tensor:
    """Layer activations flattened at the layer's own resolution: ``(B, D)`` float32 on the model's device
    (:func:`flatten_activation`)."""
    module = resolve_layers(bundle.model, [layer], bundle.spec)[layer]
    store: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: Any, o: Any) -> None:
        store.append(flatten_activation(first_tensor(o).detach(), bundle, drop_prefix_tokens).float())
        raise _Stop

    with hooks([(module, hook)]):
        for sl in batches(len(x), batch_size):
            _run(bundle, x[sl].to(bundle.device))
    return torch.cat(store)


def objective_gradients(bundle: ModelBundle, x: torch.Tensor, lower: Sequence[str], upper: str | None = None,
                        centroid: torch.Tensor | None = None, class_index: int | None = None,
                        drop_prefix_tokens: bool = True) -> dict[str, torch.Tensor]:
    """Per-input gradients of a deep objective with respect to shallower activations: ``{layer: (B, D)}``,
    flattened as :func:`flat_activations` flattens the activations.

    The objective is ``-||GAP(z_upper(x)) - centroid||_2`` (ITCAV, eq. 5.6 with the sign of
    methods.md) when ``upper`` is given (``centroid`` ``(C,)``, or ``(B, C)``: one per input), else the
    logit of ``class_index`` (TCAV). ``lower`` must be
    in execution order, all before ``upper``. One forward and one backward serve every lower layer; the pass stops at
    ``upper``. Inputs are independent (eval mode), so the gradient of the batch sum is per input.
    """
    if (upper is None) == (class_index is None):
        raise ValueError("give either upper (with centroid) or class_index")
    modules = resolve_layers(bundle.model, [*lower, *([upper] if upper else [])], bundle.spec)
    recorded: dict[str, torch.Tensor] = {}
    top: dict[str, torch.Tensor] = {}

    def make_lower(name: str, leaf: bool) -> Callable[..., Any]:
        def hook(_m: nn.Module, _i: Any, o: Any) -> Any:
            t = first_tensor(o)
            # The shallowest layer becomes a fresh leaf, so nothing before it joins the graph; the
            # module's output is replaced by a clone so that in-place ops downstream stay legal.
            src = t.detach().requires_grad_(True) if leaf else t
            recorded[name] = src
            return _replace_first(o, src.clone())
        return hook

    def upper_hook(_m: nn.Module, _i: Any, o: Any) -> None:
        top["z"] = first_tensor(o)
        raise _Stop

    pairs = [(modules[n], make_lower(n, i == 0)) for i, n in enumerate(lower)]
    if upper:
        pairs.append((modules[upper], upper_hook))
    x = x.to(bundle.device)
    with torch.enable_grad(), hooks(pairs):
        logits = _run(bundle, x)
        if upper:
            y = bundle_gap(top["z"], bundle).float()
            q = centroid.to(y.device, y.dtype)
            q = q.view(1, -1) if q.ndim == 1 else q
            objective = -torch.sqrt(((y - q) ** 2).sum(dim=1) + 1e-12)
        else:
            objective = logits[:, class_index].float()
        grads = torch.autograd.grad(objective.sum(), [recorded[n] for n in lower], allow_unused=True)
    out = {}
    for name, g in zip(lower, grads, strict=True):
        g = torch.zeros_like(recorded[name]) if g is None else g
        out[name] = flatten_activation(g.detach(), bundle, drop_prefix_tokens).float()
    return out


def _shift_hook(direction: torch.Tensor, bundle: ModelBundle) -> Callable[..., Any]:
    """A hook adding ``direction`` (C,) at every position of the layer's activation."""
    def hook(_m: nn.Module, _i: Any, o: Any) -> Any:
        t = first_tensor(o)
        d = direction.to(t.device, t.dtype)
        if t.ndim == 2 or t.ndim == 3 or bundle.channels_last:
            shifted = t + d  # (B, C), tokens (B, N, C), channels-last maps
        else:
            shifted = t + d.view(1, -1, *([1] * (t.ndim - 2)))
        return _replace_first(o, shifted)
    return hook


@torch.no_grad()
def shifted_logits(bundle: ModelBundle, x: torch.Tensor, layer: str, shift: torch.Tensor,
                   batch_size: int = 32) -> torch.Tensor:
    """Logits ``(B, K)`` with ``shift`` (C,) added to ``layer``'s activation at every position."""
    module = resolve_layers(bundle.model, [layer], bundle.spec)[layer]
    out = []
    with hooks([(module, _shift_hook(shift, bundle))]):
        for sl in batches(len(x), batch_size):
            out.append(_forward(bundle, x[sl].to(bundle.device)).float().cpu())
    return torch.cat(out)


def _shifts_hook(shifts: torch.Tensor, bundle: ModelBundle) -> Callable[..., Any]:
    """A hook adding row ``k`` of ``shifts`` ``(n, C)`` to sample ``k`` of the layer's activation at every
    position; an activation of batch 1 broadcasts to ``n`` shifted copies."""
    def hook(_m: nn.Module, _i: Any, o: Any) -> Any:
        t = first_tensor(o)
        d = shifts.to(t.device, t.dtype)
        ones = [1] * (t.ndim - 2)
        if t.ndim == 2 or t.ndim == 3 or bundle.channels_last:
            d = d.view(len(d), *ones, -1)  # (B, C), tokens (B, N, C), channels-last maps
        else:
            d = d.view(len(d), -1, *ones)
        return _replace_first(o, t + d)
    return hook


def _correct(logits: torch.Tensor, class_index: int) -> np.ndarray:
    return (logits.argmax(1) == class_index).cpu().numpy().astype(np.int64)


@torch.no_grad()
def shifted_correct(bundle: ModelBundle, x: torch.Tensor, layer: str, shifts: torch.Tensor, class_index: int,
                    batch_size: int = 32) -> np.ndarray:
    """For each shift ``shifts[k]`` ``(C,)`` added to ``layer``'s activation at every position, how many of
    the images ``x`` ``(B, 3, H, W)`` the model puts in ``class_index``: ``(n,)`` int.

    Equal to running :func:`shifted_logits` once per shift, in far fewer passes: each pass runs one
    image up to ``layer`` once and carries up to ``batch_size`` shifted copies of its activation
    from there on (so no pass holds more than ``batch_size`` activations past the layer). When the
    model's data flow does not allow that (a tensor from before the layer joins one after it other
    than by broadcasting), checked on the first image against repeating the input, every pass
    repeats the inputs instead: ``batch_size`` (image, shift) pairs per pass.
    """
    module = resolve_layers(bundle.model, [layer], bundle.spec)[layer]
    n = len(shifts)
    counts = np.zeros(n, dtype=np.int64)
    if n == 0 or len(x) == 0:
        return counts

    def run(inputs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        with hooks([(module, _shifts_hook(rows, bundle))]):
            return _forward(bundle, inputs.to(bundle.device)).float().cpu()

    expand = True
    first = shifts[: min(n, batch_size)]
    try:
        out = run(x[:1], first)
        probe = min(2, len(first))
        ref = run(x[:1].expand(probe, *x.shape[1:]), first[:probe])
        expand = out.shape == (len(first), ref.shape[1]) and torch.allclose(out[:probe], ref, rtol=1e-4, atol=1e-4)
    except RuntimeError:  # e.g. a skip connection concatenated with the expanded activation
        expand = False
    if expand:
        for i in range(len(x)):
            for sl in batches(n, batch_size):
                logits = out if i == 0 and sl.start == 0 else run(x[i:i + 1], shifts[sl])
                counts[sl] += _correct(logits, class_index)
        return counts
    pairs = np.stack(np.meshgrid(np.arange(len(x)), np.arange(n), indexing="ij"), -1).reshape(-1, 2)
    for sl in batches(len(pairs), batch_size):
        img, k = torch.as_tensor(pairs[sl, 0]), torch.as_tensor(pairs[sl, 1])
        counts += np.bincount(pairs[sl, 1], weights=_correct(run(x[img], shifts[k]), class_index),
                              minlength=n).astype(np.int64)
    return counts
