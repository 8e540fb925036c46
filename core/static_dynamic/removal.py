"""Neuron removal (3.5.1): zero the top-k% units of a layer at inference and watch the metric fall."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from core.models import ModelBundle, resolve_layers

DEFAULT_FRACTIONS = tuple(round(0.1 * i, 1) for i in range(11))


def ranking(scores: np.ndarray) -> np.ndarray:
    """Unit indices by descending score; units without a score (NaN: dead) go last."""
    s = np.asarray(scores, dtype=np.float64)
    key = np.where(np.isfinite(s), -s, np.inf)
    return np.argsort(key, kind="stable")


def top_fraction(order: np.ndarray, fraction: float) -> np.ndarray:
    """The first ``round(fraction * n)`` units of ``order``."""
    return order[: round(fraction * len(order))]


def auc(fractions: Sequence[float], values: Sequence[float]) -> float:
    """Area under a removal curve (trapezoid rule over the fraction axis, which spans [0, 1])."""
    x, y = np.asarray(fractions, dtype=np.float64), np.asarray(values, dtype=np.float64)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def _zero(act: torch.Tensor, channels: torch.Tensor, bundle: ModelBundle) -> torch.Tensor:
    """``act`` with ``channels`` set to 0; the channel axis is 1 for maps, the last for tokens."""
    out = act.clone()
    if act.ndim == 3 or (bundle.channels_last and act.ndim >= 4):  # tokens (B, N, C) or channels-last
        out[..., channels] = 0
    else:
        out[:, channels] = 0
    return out


@contextmanager
def zeroed_units(bundle: ModelBundle, layer: str, units: Sequence[int] | np.ndarray) -> Iterator[None]:
    """Within the block, the output channels ``units`` of ``layer`` are zero on every forward pass.
    The hook is removed when the block exits, whatever happens inside it."""
    module = resolve_layers(bundle.model, [layer], bundle.spec)[layer]
    idx = torch.as_tensor(np.asarray(units, dtype=np.int64))

    def hook(_m: torch.nn.Module, _inp: object, out: object) -> object:
        if len(idx) == 0:
            return None
        if isinstance(out, torch.Tensor):
            return _zero(out, idx.to(out.device), bundle)
        if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor):
            return (_zero(out[0], idx.to(out[0].device), bundle), *out[1:])
        raise TypeError(f"{layer}: cannot zero units of an output of type {type(out).__name__}")

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()

