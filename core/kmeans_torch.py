"""k-means in torch, on any device: the algorithm of scikit-learn's ``KMeans`` (greedy k-means++
seeding, Lloyd iterations, the best of ``n_init`` restarts by inertia), for clusterings too large
to run comfortably on the CPU (the VCC's concepts at every layer of a deep model).

It finds clusterings of the same quality as scikit-learn's, not the same labels: the random draws
differ. Deterministic for a seed and device: the random numbers come from a seeded CPU generator
(so they are the same on every device), and the centre sums are matrix products, not atomic adds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

ROW_CHUNK = 1 << 16
"""Rows of ``x`` per distance block: bounds the ``(rows, k)`` temporaries of a large clustering."""


@dataclass
class KMeansResult:
    """``labels`` ``(n,)`` int64, ``centers`` ``(k, C)`` float64, ``inertia`` (sum of squared distances
    of the rows to their centres, float64), ``n_iter`` Lloyd iterations of the kept restart."""

    labels: np.ndarray
    centers: np.ndarray
    inertia: float
    n_iter: int


def _sq_distances(x: torch.Tensor, x_sq: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Squared L2 distances ``(n, k)`` of rows ``x`` ``(n, C)`` (``x_sq`` their squared norms) to ``centers``."""
    c_sq = (centers * centers).sum(1)
    return (x_sq[:, None] - 2.0 * (x @ centers.T) + c_sq[None]).clamp_min_(0.0)


def _assign(x: torch.Tensor, x_sq: torch.Tensor, centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre of each row and its squared distance: ``(labels (n,), d2 (n,))``, in row blocks."""
    labels, d2 = [], []
    for start in range(0, len(x), ROW_CHUNK):
        d = _sq_distances(x[start:start + ROW_CHUNK], x_sq[start:start + ROW_CHUNK], centers)
        v, i = d.min(1)
        labels.append(i)
        d2.append(v)
    return torch.cat(labels), torch.cat(d2)


def _sums(x: torch.Tensor, labels: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cluster sums ``(k, C)`` and counts ``(k,)``, as one-hot products (deterministic on GPUs)."""
    sums = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device)
    counts = torch.zeros(k, dtype=x.dtype, device=x.device)
    for start in range(0, len(x), ROW_CHUNK):
        onehot = torch.nn.functional.one_hot(labels[start:start + ROW_CHUNK], k).to(x.dtype)
        sums += onehot.T @ x[start:start + ROW_CHUNK]
        counts += onehot.sum(0)
    return sums, counts


def kmeans_plusplus(x: torch.Tensor, x_sq: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeds ``(k, C)`` (scikit-learn's ``_kmeans_plusplus``: ``2 + log k`` candidates
    per seed, drawn in proportion to the squared distance to the nearest seed, the one lowering the
    potential most kept)."""
    n = len(x)
    trials = 2 + int(math.log(k))
    first = int(torch.randint(n, (1,), generator=gen))
    centers = [x[first]]
    closest = _sq_distances(x, x_sq, x[first:first + 1])[:, 0]
    potential = closest.sum()
    for _ in range(1, k):
        draws = torch.rand(trials, generator=gen, dtype=torch.float64).to(x.device, x.dtype) * potential
        cand = torch.searchsorted(torch.cumsum(closest, 0), draws).clamp_(max=n - 1)
        d = torch.minimum(closest[None], _sq_distances(x, x_sq, x[cand]).T)  # (trials, n)
        pots = d.sum(1)
        best = int(torch.argmin(pots))
        closest, potential = d[best], pots[best]
        centers.append(x[cand[best]])
    return torch.stack(centers)


def _lloyd(x: torch.Tensor, x_sq: torch.Tensor, centers: torch.Tensor, max_iter: int,
           tol: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Lloyd iterations from ``centers`` until the labels stop changing or the centres move less than
    ``tol`` (total squared shift); an empty cluster takes the row farthest from its centre."""
    k = len(centers)
    labels = None
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        new_labels, d2 = _assign(x, x_sq, centers)
        sums, counts = _sums(x, new_labels, k)
        empty = torch.nonzero(counts == 0).flatten()
        new_centers = sums / counts.clamp_min(1)[:, None]
        if len(empty):
            far = torch.argsort(d2, descending=True, stable=True)[:len(empty)]
            new_centers[empty] = x[far]
        shift = float(((new_centers - centers) ** 2).sum())
        centers = new_centers
        if labels is not None and bool(torch.equal(labels, new_labels)):
            labels = new_labels
            break
        labels = new_labels
        if shift <= tol:
            break
    labels, _ = _assign(x, x_sq, centers)  # labels consistent with the final centres
    return labels, centers, n_iter


def kmeans(x: np.ndarray | torch.Tensor, k: int, n_init: int = 10, seed: int = 0, max_iter: int = 300,
           tol: float = 1e-4, device: str | torch.device | None = None,
           dtype: torch.dtype = torch.float32) -> KMeansResult:
    """k-means of the rows of ``x`` ``(n, C)`` into ``k`` clusters, the best of ``n_init`` restarts.

    ``tol`` is relative to the mean per-feature variance, as scikit-learn's. The rows are centred
    first (as scikit-learn does) and clustered in ``dtype`` on ``device`` (default: ``x``'s own, or
    the CPU for an array); the inertia is recomputed in float64 to pick the restart.
    """
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    device = torch.device(device) if device is not None else xt.device
    n = len(xt)
    if xt.ndim != 2 or n == 0:
        raise ValueError(f"k-means needs a non-empty (n, C) array, got shape {tuple(xt.shape)}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be 1 to {n} (the number of rows), not {k}")
    x64 = xt.to(device, torch.float64)
    mean = x64.mean(0)
    xc = (x64 - mean).to(dtype)
    x_sq = (xc * xc).sum(1)
    abs_tol = float(x64.var(0, unbiased=False).mean()) * tol
    gen = torch.Generator().manual_seed(int(seed))
    centered64 = x64 - mean
    best: tuple[float, torch.Tensor, torch.Tensor, int] | None = None
    for _ in range(n_init):
        start = kmeans_plusplus(xc, x_sq, k, gen)
        labels, centers, it = _lloyd(xc, x_sq, start, max_iter, abs_tol)
        inertia = float(((centered64 - centers.double()[labels]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, labels, centers, it)
    assert best is not None
    inertia, labels, centers, it = best
    return KMeansResult(labels.cpu().numpy().astype(np.int64), (centers.double() + mean).cpu().numpy(), inertia, it)
