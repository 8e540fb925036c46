"""Concept Randomized Importance Sampling, CRIS (eq. 4.5-4.6), for any maskable units.

Per video, ``K`` random masks each remove ``round(rho * U)`` of the ``U`` units (every concept of every
layer and head at once, or whole heads); the metric ``D`` of every masked forward pass is kept, so
importance can be re-aggregated later: importance of unit ``i`` = mean ``D`` over the masks that keep
``i`` - mean ``D`` over the masks that remove ``i`` (sign flipped for a loss, so that larger is always
more important), averaged over videos.

:func:`bootstrap_interval` gives each unit's importance a percentile interval by resampling every
video's masks with replacement; :func:`released_importance` is the released code's estimator, the mean
``D`` over the masks that keep a unit (it ranks alike in expectation, with more variance).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from core.batching import BatchSize
from core.checkpoint import CheckpointStore
from core.models import ModelBundle
from core.precision import autocast
from core.vtcd.features import Inputs, batch_size_of, take
from core.vtcd.masking import HIGHER_IS_BETTER, UnitSet, masked_metrics, metric_values, run_masks


@dataclass
class CRISResult:
    """The whole mask-by-metric record of one CRIS run over ``V`` videos, ``K`` masks, ``U`` units.

    ``removed`` bool ``(V, K, U)`` (True: the mask removes the unit); ``values`` float64 ``(V, K)`` the
    metric of each masked pass; ``baseline`` ``(V,)`` the unmasked metric; ``targets`` ``(V,)`` the class
    the metric is taken on; ``importance_per_video`` ``(V, U)`` and ``importance`` ``(U,)`` (NaN where a
    unit was never kept or never removed); ``expand_at``: the layer whose input was repeated along the
    batch (None: the input was). ``ci_low``/``ci_high`` ``(U,)``: the bootstrap interval of
    ``importance`` at ``ci_level`` (None: not computed); ``released`` ``(U,)``: the released code's
    estimator (:func:`released_importance`).
    """

    names: list[str]
    metric: str
    higher_is_better: bool
    rho: float
    targets: np.ndarray
    baseline: np.ndarray
    removed: np.ndarray
    values: np.ndarray
    importance_per_video: np.ndarray
    importance: np.ndarray
    expand_at: str | None = None
    ci_low: np.ndarray | None = None
    ci_high: np.ndarray | None = None
    ci_level: float | None = None
    released: np.ndarray | None = None

    @classmethod
    def from_record(cls, names: Sequence[str], metric: str, rho: float, targets: np.ndarray, baseline: np.ndarray,
                    removed: np.ndarray, values: np.ndarray, expand_at: str | None = None, n_boot: int = 0,
                    ci_level: float = 0.95, seed: int = 0) -> CRISResult:
        """The result of a mask-by-metric record: importance, the released estimator and (``n_boot`` > 0)
        the bootstrap interval."""
        higher = HIGHER_IS_BETTER[metric]
        per_video, mean = importance_from_masks(removed, values, higher)
        low = high = None
        if n_boot > 0:
            low, high = bootstrap_interval(removed, values, higher, n_boot, ci_level, seed)
        return cls(names=list(names), metric=metric, higher_is_better=higher, rho=rho, targets=targets,
                   baseline=baseline, removed=removed, values=values, importance_per_video=per_video,
                   importance=mean, expand_at=expand_at, ci_low=low, ci_high=high,
                   ci_level=ci_level if n_boot > 0 else None, released=released_importance(removed, values, higher))

    def ranking(self) -> np.ndarray:
        """Unit indices, most important first (NaN last)."""
        imp = np.where(np.isnan(self.importance), -np.inf, self.importance)
        return np.argsort(-imp, kind="stable")


def draw_masks(n_masks: int, n_units: int, rho: float, rng: np.random.Generator) -> np.ndarray:
    """``(n_masks, n_units)`` bool: each row removes ``round(rho * n_units)`` units drawn uniformly."""
    n_remove = round(rho * n_units)
    order = rng.random((n_masks, n_units)).argsort(axis=1).argsort(axis=1)
    return order < n_remove


def importance_from_masks(removed: np.ndarray, values: np.ndarray,
                          higher_is_better: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``D`` over masks keeping each unit minus mean ``D`` over masks removing it.

    ``removed`` ``(V, K, U)``, ``values`` ``(V, K)`` -> per video ``(V, U)`` and averaged over videos ``(U,)``.
    """
    r = np.asarray(removed, dtype=bool)
    v = np.asarray(values, dtype=np.float64)[:, :, None]
    n_rm, n_keep = r.sum(1), (~r).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_rm = np.where(r, v, 0.0).sum(1) / n_rm
        mean_keep = np.where(~r, v, 0.0).sum(1) / n_keep
    per_video = mean_keep - mean_rm
    if not higher_is_better:
        per_video = -per_video
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        mean = np.nanmean(per_video, axis=0) if len(per_video) else np.zeros(r.shape[2])
    return per_video, mean


def released_importance(removed: np.ndarray, values: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """The released code's estimator: mean ``D`` over the masks that keep each unit, averaged over videos,
    ``(U,)`` in the metric's units (negated for a loss, so that larger is more important, as ours)."""
    r = np.asarray(removed, dtype=bool)
    v = np.asarray(values, dtype=np.float64)[:, :, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        keep = np.where(~r, v, 0.0).sum(1) / (~r).sum(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = np.nanmean(keep, axis=0) if len(keep) else np.zeros(r.shape[2])
    return out if higher_is_better else -out


def bootstrap_interval(removed: np.ndarray, values: np.ndarray, higher_is_better: bool = True, n_boot: int = 200,
                       level: float = 0.95, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of :func:`importance_from_masks`'s mean importance ``(U,)``.

    Each replicate redraws every video's ``K`` masks with replacement (multinomial counts), recomputes
    each video's keep-minus-remove difference and averages over videos. ``removed`` ``(V, K, U)``,
    ``values`` ``(V, K)``. Returns (low, high), NaN where a unit has no estimate.
    """
    r = torch.as_tensor(np.asarray(removed, dtype=bool))
    vals = torch.as_tensor(np.asarray(values, dtype=np.float64))
    n_videos, k, u = r.shape
    if n_boot < 1 or k == 0 or n_videos == 0:
        nan = np.full(u, np.nan)
        return nan, nan.copy()
    gen = torch.Generator().manual_seed(int(seed))
    total = torch.zeros(n_boot, u, dtype=torch.float64)
    count = torch.zeros(n_boot, u, dtype=torch.float64)
    for v in range(n_videos):
        idx = torch.randint(0, k, (n_boot, k), generator=gen)
        w = torch.zeros(n_boot, k, dtype=torch.float64).scatter_add_(1, idx, torch.ones(n_boot, k, dtype=torch.float64))
        rm = r[v].double()  # (K, U)
        wv = w * vals[v]
        n_rm, s_rm = w @ rm, wv @ rm
        n_keep, s_keep = w.sum(1, keepdim=True) - n_rm, wv.sum(1, keepdim=True) - s_rm
        diff = s_keep / n_keep - s_rm / n_rm  # inf/NaN where a replicate never kept or removed the unit
        ok = torch.isfinite(diff)
        total += torch.where(ok, diff, 0.0)
        count += ok.double()
    mean = (total / count).numpy()  # NaN where no video had an estimate
    if not higher_is_better:
        mean = -mean
    alpha = (1.0 - level) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanquantile(mean, [alpha, 1.0 - alpha], axis=0)
    return low, high


def ranking_convergence(res: CRISResult | None, top_k: int = 5) -> tuple[int, int] | None:
    """How settled the ranking of ``res`` is: ``(separated, k)``, with ``k = min(top_k, ranked units - 1)``
    and ``separated`` the number of the ``k`` most important units whose bootstrap interval's lower end
    is above the importance of unit ``k + 1`` (the best one outside the top ``k``). ``None`` without
    intervals or with fewer than 2 units with an importance."""
    if res is None or res.ci_low is None:
        return None
    order = [int(i) for i in res.ranking() if np.isfinite(res.importance[i])]
    k = min(int(top_k), len(order) - 1)
    if k < 1:
        return None
    after = float(res.importance[order[k]])
    low = np.asarray(res.ci_low, dtype=np.float64)[order[:k]]
    return int(np.sum(np.nan_to_num(low, nan=-np.inf) > after)), k


@torch.no_grad()
def unmasked_metrics(bundle: ModelBundle, x: Inputs, targets: Sequence[int], metric: str,
                     batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(metric ``(V,)``, top-1 prediction ``(V,)``) of the unmasked videos (``batch_size`` halved while a
    forward runs out of memory)."""
    def run(start: int, stop: int) -> tuple[list[float], np.ndarray]:
        logits = bundle(take(x, slice(start, stop)))
        return ([metric_values(row[None], int(targets[start + j]), metric)[0] for j, row in enumerate(logits)],
                logits.argmax(1).cpu().numpy())

    parts = BatchSize(batch_size, "clips", bundle.device).run(batch_size_of(x), run)
    return np.asarray([v for p in parts for v in p[0]]), np.concatenate([p[1] for p in parts])


def cris_units(bundle: ModelBundle, x: Inputs, units: UnitSet, targets: Sequence[int] | None = None,
               n_masks: int = 4000, rho: float = 0.5, metric: str = "loss", batch_size: int = 64, seed: int = 0,
               expand_at: str | None = None, salt: int = 0, n_boot: int = 0, ci_level: float = 0.95,
               store: CheckpointStore | None = None, tag: str = "cris",
               progress: Callable[[int, int], None] | None = None, precision: str = "fp32") -> CRISResult:
    """CRIS over ``units`` for the videos ``x`` ``(V, 3, T, H, W)`` (``units`` built for the same videos).

    ``targets`` ``(V,)``: the class each video's metric is taken on (default: the unmasked prediction).
    Masks of video ``v`` come from ``np.random.default_rng([seed, salt, v])``. ``expand_at``: the first
    masked layer, whose input is repeated along the batch so the layers before it run once (checked on
    the first video against repeating the input; dropped if they differ or it fails). ``n_boot``
    bootstrap resamplings give the ``ci_level`` interval (seeded with ``seed + salt``).

    ``store``: each video's masked metrics are saved as ``parts/<tag>/video-NNNN.npz`` (and the shared
    prefix settled on the first video as ``parts/<tag>/expand.json``); videos saved before are not
    recomputed. ``progress(done, total)`` is called after each video.

    Forward passes run in ``precision`` (:mod:`core.precision`; the metrics are float64 whatever it is);
    ``batch_size`` masks per pass, halved while a pass runs out of memory, the size that fitted kept
    for the next videos.
    """
    with autocast(precision, bundle.device):
        return _cris_units(bundle, x, units, targets, n_masks, rho, metric, BatchSize(batch_size, "CRIS masks",
                           bundle.device), seed, expand_at, salt, n_boot, ci_level, store, tag, progress)


def _cris_units(bundle: ModelBundle, x: Inputs, units: UnitSet, targets: Sequence[int] | None, n_masks: int,
                rho: float, metric: str, batch_size: BatchSize, seed: int, expand_at: str | None, salt: int,
                n_boot: int, ci_level: float, store: CheckpointStore | None, tag: str,
                progress: Callable[[int, int], None] | None) -> CRISResult:
    n_videos = batch_size_of(x)
    if units.n_videos and units.n_videos != n_videos:
        raise ValueError(f"units were built for {units.n_videos} videos, got {n_videos}")
    if targets is None:
        targets = unmasked_metrics(bundle, x, [0] * n_videos, metric)[1]
    targets = np.asarray(targets, dtype=np.int64)
    baseline, _ = unmasked_metrics(bundle, x, targets, metric)
    removed = np.zeros((n_videos, n_masks, units.n_units), dtype=bool)
    values = np.zeros((n_videos, n_masks))
    state = f"parts/{tag}/expand.json"
    settled = store is not None and store.has(state)
    if settled:
        expand_at = store.load_json(state)["expand_at"]
    for v in range(n_videos):
        removed[v] = draw_masks(n_masks, units.n_units, rho, np.random.default_rng([seed, salt, v]))
        name = f"parts/{tag}/video-{v:04d}.npz"
        if store is not None and store.has(name):
            values[v] = store.load_arrays(name)["values"]
        elif n_masks > 0:
            xv, tv = take(x, v), int(targets[v])
            if not settled:  # the first video settles whether the prefix can be shared
                values[v], expand_at = run_masks(bundle, xv, units, v, removed[v], tv, metric, batch_size, expand_at)
                settled = True
                if store is not None:
                    store.save_json(state, {"expand_at": expand_at})
            else:
                values[v] = masked_metrics(bundle, xv, units, v, removed[v], tv, metric, batch_size, expand_at)
            if store is not None:
                store.save_arrays(name, values=values[v])
        if progress is not None:
            progress(v + 1, n_videos)
    return CRISResult.from_record(units.names, metric, rho, targets, baseline, removed, values, expand_at, n_boot,
                                  ci_level, seed + salt)
