"""Validation of concept importance (4.5.5): attribution curves, single-unit occlusion, AUCs.

An attribution curve removes a growing fraction of units (concepts, or heads for head pruning) in a
given order and records the mean metric over the videos. Positive perturbation removes the most
important first (the metric should fall fast), negative the least important first (it should hold);
random orders are the reference. Every schedule of a video runs through the batched masked forwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.models import ModelBundle
from core.vtcd.features import Inputs, batch_size_of, take
from core.vtcd.importance import unmasked_metrics
from core.vtcd.masking import HIGHER_IS_BETTER, UnitSet, masked_metrics


@dataclass
class AttributionCurves:
    """``fractions`` ``(S,)`` of the units in scope removed; per curve name (``"<method>/positive"``,
    ``"<method>/negative"``, ``"random"``) the mean metric over videos ``(S,)``, per video ``(V, S)``, and
    the area under the curve over the fraction axis [0, 1]."""

    fractions: np.ndarray
    units: np.ndarray
    metric: str
    curves: dict[str, np.ndarray]
    per_video: dict[str, np.ndarray]
    auc: dict[str, float]


def order_by(importance: np.ndarray, units: Sequence[int], descending: bool = True) -> np.ndarray:
    """``units`` sorted by ``importance`` (most important first when ``descending``); NaN last either way."""
    units = np.asarray(units, dtype=int)
    imp = np.asarray(importance, dtype=np.float64)[units]
    key = np.where(np.isnan(imp), np.inf, -imp if descending else imp)
    return units[np.argsort(key, kind="stable")]


def removal_schedule(order: Sequence[int], n_units: int, fractions: np.ndarray) -> np.ndarray:
    """``(S, n_units)`` bool: step ``j`` removes the first ``round(fractions[j] * len(order))`` of ``order``."""
    order = np.asarray(order, dtype=int)
    out = np.zeros((len(fractions), n_units), dtype=bool)
    for j, f in enumerate(fractions):
        out[j, order[: round(f * len(order))]] = True
    return out


def occlusion_importance(bundle: ModelBundle, x: Inputs, units: UnitSet, targets: Sequence[int],
                         metric: str = "loss", batch_size: int = 64,
                         expand_at: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Single-unit occlusion: the metric drop when only unit ``i`` is removed (sign flipped for a loss).

    Returns per video ``(V, U)`` and the mean over videos ``(U,)``.
    """
    targets = np.asarray(targets, dtype=np.int64)
    base, _ = unmasked_metrics(bundle, x, targets, metric)
    eye = np.eye(units.n_units, dtype=bool)
    per_video = np.stack([
        masked_metrics(bundle, take(x, v), units, v, eye, int(targets[v]), metric, batch_size, expand_at)
        for v in range(batch_size_of(x))])
    drop = base[:, None] - per_video
    if not HIGHER_IS_BETTER[metric]:
        drop = -drop
    return drop, drop.mean(0)


def attribution_curves(bundle: ModelBundle, x: Inputs, units: UnitSet, importances: Mapping[str, np.ndarray],
                       targets: Sequence[int], metric: str = "probability", steps: int = 11, n_random: int = 5,
                       scope: Sequence[int] | None = None, seed: int = 0, batch_size: int = 64,
                       expand_at: str | None = None) -> AttributionCurves:
    """Attribution curves of each importance ranking (positive and negative perturbation) and of
    ``n_random`` random orders (averaged into ``"random"``), removing units of ``scope`` only (default
    all; e.g. the concepts of one layer)."""
    scope_units = np.arange(units.n_units) if scope is None else np.asarray(scope, dtype=int)
    fractions = np.linspace(0.0, 1.0, steps)
    rng = np.random.default_rng([seed, 7])
    schedules: dict[str, np.ndarray] = {}
    for name, imp in importances.items():
        schedules[f"{name}/positive"] = removal_schedule(order_by(imp, scope_units, True), units.n_units, fractions)
        schedules[f"{name}/negative"] = removal_schedule(order_by(imp, scope_units, False), units.n_units, fractions)
    for r in range(n_random):
        schedules[f"random/{r}"] = removal_schedule(rng.permutation(scope_units), units.n_units, fractions)
    names = list(schedules)
    stacked = np.concatenate([schedules[n] for n in names])
    targets = np.asarray(targets, dtype=np.int64)
    values = np.stack([
        masked_metrics(bundle, take(x, v), units, v, stacked, int(targets[v]), metric, batch_size, expand_at)
        for v in range(batch_size_of(x))]).reshape(-1, len(names), steps)
    per_video = {n: values[:, i] for i, n in enumerate(names) if not n.startswith("random/")}
    if n_random:
        per_video["random"] = np.mean([values[:, i] for i, n in enumerate(names) if n.startswith("random/")], axis=0)
    curves = {n: v.mean(0) for n, v in per_video.items()}
    auc = {n: float(np.trapezoid(c, fractions)) for n, c in curves.items()}
    return AttributionCurves(fractions=fractions, units=scope_units, metric=metric, curves=curves,
                             per_video=per_video, auc=auc)
