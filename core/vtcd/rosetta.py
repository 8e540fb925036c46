"""Rosetta concepts (eq. 4.7-4.8): concepts of D models whose supports overlap on the same videos.

``R`` of a tuple of concepts (one per model) is |intersection| / |union| of their supports, averaged
over all the videos, a video where none of the tuple's concepts appears counting as 0, as the
released code does (``average="all"``); ``average="present"`` averages only over the videos where
the union is not empty (this project's earlier rule, which scores sparse concepts higher). Each
model keeps its top ``epsilon`` concepts by importance; tuples grow from d = 2 to D over the models,
and a concept whose every d-tuple has ``R <= delta`` is dropped before d + 1.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

Average = Literal["all", "present"]
AVERAGES: tuple[str, ...] = ("all", "present")


@dataclass
class RosettaTuple:
    """One concept per model of ``models`` (``concepts[i]`` indexes model ``models[i]``'s concepts)."""

    models: tuple[int, ...]
    concepts: tuple[int, ...]
    r: float

    @property
    def d(self) -> int:
        return len(self.models)


@dataclass
class RosettaResult:
    """``candidates``: per model the concepts kept by the ``epsilon`` importance filter; ``survivors[d]``
    per model the concepts in at least one d-tuple with R > delta; ``tuples`` the union over d of those
    tuples (by d, then R descending); ``mean_r[d]`` the mean R over every d-tuple evaluated (the chance
    level the survivors are read against)."""

    epsilon: float
    delta: float
    candidates: list[np.ndarray]
    average: str = "all"
    survivors: dict[int, list[np.ndarray]] = field(default_factory=dict)
    tuples: list[RosettaTuple] = field(default_factory=list)
    mean_r: dict[int, float] = field(default_factory=dict)


def to_common_grid(supports: np.ndarray | torch.Tensor, grid: Sequence[int]) -> np.ndarray:
    """Supports ``(Q, V, T, H, W)`` resized (nearest) to ``(Q, V, *grid)`` and flattened to ``(Q, V, P)``."""
    s = torch.as_tensor(np.asarray(supports))
    q, v = s.shape[:2]
    if tuple(s.shape[2:]) != tuple(grid):
        s = F.interpolate(s.reshape(q * v, 1, *s.shape[2:]).float(), size=tuple(int(g) for g in grid),
                          mode="nearest").reshape(q, v, *grid) > 0.5
    return s.reshape(q, v, -1).numpy().astype(bool)


def top_fraction(importance: np.ndarray, epsilon: float) -> np.ndarray:
    """Indices of the ``ceil(epsilon * Q)`` most important concepts (NaN never kept before a number)."""
    imp = np.asarray(importance, dtype=np.float64)
    n = max(1, math.ceil(epsilon * len(imp) - 1e-9))
    key = np.where(np.isnan(imp), np.inf, -imp)
    return np.sort(np.argsort(key, kind="stable")[:n])


def mean_iou(inter: np.ndarray, union: np.ndarray, average: str = "all") -> np.ndarray:
    """Mean over the last axis (videos) of inter / union, a video with an empty union counting as 0
    (``average="all"``) or left out (``"present"``; 0 when the union is empty everywhere)."""
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, not {average!r}")
    valid = union > 0
    iou = np.where(valid, inter / np.maximum(union, 1), 0.0)
    n = valid.sum(-1) if average == "present" else np.full(iou.shape[:-1], iou.shape[-1])
    return np.where(n > 0, iou.sum(-1) / np.maximum(n, 1), 0.0)


def pairwise_r(a: np.ndarray, b: np.ndarray, average: str = "all") -> np.ndarray:
    """R of every pair: ``a`` ``(Qa, V, P)``, ``b`` ``(Qb, V, P)`` bool -> ``(Qa, Qb)``."""
    ta, tb = torch.from_numpy(a).double(), torch.from_numpy(b).double()
    inter = torch.einsum("avp,bvp->abv", ta, tb).numpy()
    union = ta.sum(-1).numpy()[:, None, :] + tb.sum(-1).numpy()[None, :, :] - inter
    return mean_iou(inter, union, average)


def tuple_r(supports: Sequence[np.ndarray], average: str = "all") -> float:
    """R of one tuple of supports, each ``(V, P)`` bool."""
    inter = np.logical_and.reduce(supports).sum(-1)
    union = np.logical_or.reduce(supports).sum(-1)
    return float(mean_iou(inter.astype(np.float64), union.astype(np.float64), average))


def rosetta(supports: Sequence[np.ndarray], importances: Sequence[np.ndarray], epsilon: float = 0.15,
            delta: float = 0.15, max_d: int | None = None, average: str = "all") -> RosettaResult:
    """Mine Rosetta concepts across ``D = len(supports)`` models.

    ``supports[j]`` bool ``(Q_j, V, P)``: model ``j``'s concept supports on the same ``V`` videos and the
    same grid (:func:`to_common_grid`); ``importances[j]`` ``(Q_j,)``; ``average``: see :func:`mean_iou`.
    """
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, not {average!r}")
    n_models = len(supports)
    if n_models < 2 or len(importances) != n_models:
        raise ValueError("Rosetta concepts need at least two models, each with supports and importances")
    shapes = {s.shape[1:] for s in supports}
    if len(shapes) != 1:
        raise ValueError(f"supports must share videos and grid, got {sorted(shapes)}")
    candidates = [top_fraction(imp, epsilon) for imp in importances]
    result = RosettaResult(epsilon=epsilon, delta=delta, candidates=candidates, average=average)
    pool = [c.copy() for c in candidates]
    for d in range(2, min(max_d or n_models, n_models) + 1):
        alive: list[set[int]] = [set() for _ in range(n_models)]
        scores: list[float] = []
        for models in itertools.combinations(range(n_models), d):
            if any(len(pool[m]) == 0 for m in models):
                continue
            if d == 2:
                i, j = models
                r = pairwise_r(supports[i][pool[i]], supports[j][pool[j]], average)
                scores.extend(r.ravel().tolist())
                for a, b in zip(*np.nonzero(r > delta), strict=True):
                    ci, cj = int(pool[i][a]), int(pool[j][b])
                    result.tuples.append(RosettaTuple(models, (ci, cj), float(r[a, b])))
                    alive[i].add(ci)
                    alive[j].add(cj)
                continue
            for combo in itertools.product(*(pool[m] for m in models)):
                r_val = tuple_r([supports[m][c] for m, c in zip(models, combo, strict=True)], average)
                scores.append(r_val)
                if r_val > delta:
                    result.tuples.append(RosettaTuple(models, tuple(int(c) for c in combo), r_val))
                    for m, c in zip(models, combo, strict=True):
                        alive[m].add(int(c))
        pool = [np.array(sorted(a), dtype=int) for a in alive]
        result.survivors[d] = pool
        result.mean_r[d] = float(np.mean(scores)) if scores else float("nan")
    result.tuples.sort(key=lambda t: (t.d, -t.r))
    return result
