"""Convex NMF (Ding, Li & Jordan, 2010) in torch, and the choice of the number of concepts.

Notation of methods.md: the tubelet matrix ``T`` is ``M x C`` (rows are tubelets, entries of any sign);
``T^T ~ T^T G H`` with ``G`` ``M x Q`` and ``H`` ``Q x M`` both non-negative. Centroids are the rows of
``(T^T G)^T = G^T T``; tubelet ``m`` belongs to concept ``argmax_q H[q, m]``. (Ding et al. write
``X ~ X W G^T`` with ``X = T^T``, ``W = G`` and their ``G = H^T``.)

The ``overcomplete`` package's ``ConvexNMF`` was not an option: it is not installed and there is no
network to install it. The updates below are a few lines and run on any torch device.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class CNMFResult:
    """``G`` ``(M, Q)`` with columns summing to 1 (each centroid a convex combination of tubelets),
    ``H`` ``(Q, M)``, ``centroids`` ``(Q, C)``, ``assignment`` ``(M,)``, the relative reconstruction
    error ``||T^T - T^T G H|| / ||T^T||`` and the number of updates run."""

    G: np.ndarray
    H: np.ndarray
    centroids: np.ndarray
    assignment: np.ndarray
    error: float
    iterations: int


def _split(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (y.abs() + y) / 2, (y.abs() - y) / 2


def convex_nmf(t: np.ndarray | torch.Tensor, q: int, init_labels: np.ndarray | None = None, max_iter: int = 1000,
               tol: float = 1e-7, device: str | torch.device | None = None, dtype: torch.dtype = torch.float64,
               seed: int = 0) -> CNMFResult:
    """Factor the tubelet matrix ``t`` ``(M, C)`` as ``t^T ~ t^T G H`` with ``G, H >= 0``.

    Multiplicative updates of Ding et al. (eq. 20-21 of their paper) with ``Y = t t^T`` split into
    ``Y+ = (|Y| + Y) / 2`` and ``Y- = (|Y| - Y) / 2``. Initialised from ``init_labels`` (a k-means
    clustering, as Ding et al.: indicator + 0.2) or random labels. Stops when the relative error
    changes by less than ``tol`` or after ``max_iter`` updates.
    """
    x = torch.as_tensor(t).to(device=device or "cpu", dtype=dtype)
    m = x.shape[0]
    if not 1 <= q <= m:
        raise ValueError(f"need 1 <= q <= number of tubelets ({m}), got q={q}")
    if init_labels is None:
        init_labels = np.random.default_rng(seed).integers(0, q, size=m)
    labels = torch.as_tensor(np.asarray(init_labels), device=x.device, dtype=torch.long)
    ind = torch.zeros(m, q, device=x.device, dtype=dtype)
    ind[torch.arange(m, device=x.device), labels] = 1.0
    hd = ind + 0.2  # Ding's G (= H^T), M x Q
    w = hd / ind.sum(0).clamp_min(1.0)  # Ding's W (= G), M x Q
    y = x @ x.T
    yp, yn = _split(y)
    eps = torch.finfo(dtype).tiny ** 0.5
    norm = torch.linalg.norm(x).clamp_min(eps)

    def rel_error() -> float:
        return float(torch.linalg.norm(x.T - x.T @ w @ hd.T) / norm)

    err, it = rel_error(), 0
    for it in range(1, max_iter + 1):
        ypw, ynw = yp @ w, yn @ w
        wtyw_p, wtyw_n = w.T @ ypw, w.T @ ynw
        hd = hd * torch.sqrt((ypw + hd @ wtyw_n) / (ynw + hd @ wtyw_p).clamp_min(eps))
        hth = hd.T @ hd
        w = w * torch.sqrt((yp @ hd + ynw @ hth) / (yn @ hd + ypw @ hth).clamp_min(eps))
        if it % 10 == 0 or it == max_iter:
            new = rel_error()
            if not math.isfinite(new):
                raise FloatingPointError("convex NMF diverged")
            done = abs(err - new) <= tol * max(err, eps)
            err = new
            if done:
                break
    scale = w.sum(0).clamp_min(eps)  # columns of G sum to 1; H absorbs the scale, G H is unchanged
    g, h = w / scale, (hd * scale).T
    return CNMFResult(G=g.cpu().numpy(), H=h.cpu().numpy(), centroids=(g.T @ x).cpu().numpy(),
                      assignment=h.argmax(0).cpu().numpy().astype(np.int32), error=rel_error(), iterations=it)


def elbow_kmeans(x: np.ndarray, max_k: int = 14, threshold: float = 0.95, n_init: int = 10,
                 seed: int = 0) -> tuple[int, list[float], np.ndarray]:
    """The released code's elbow: k-means for k = 1, 2, ... (at most ``max_k``), stopping at the first
    k whose inertia is above ``threshold`` x the previous one; the answer is k - 1, the last k that
    still lowered the inertia by more than ``1 - threshold``. ``max_k`` when it never stops.

    Returns (Q, the inertias computed, the k-means labels ``(M,)`` for Q).
    """
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    x = np.asarray(x, dtype=np.float64)
    inertias: list[float] = []
    labels: list[np.ndarray] = []
    for k in range(1, min(max_k, len(x)) + 1):
        # one thread: on a few hundred points, thread start-up costs 20x the work
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore")  # duplicate points: "Number of distinct clusters ... smaller"
            km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x)
        inertias.append(float(km.inertia_))
        labels.append(km.labels_.astype(np.int32))
        if k > 1 and (inertias[-2] <= 0.0 or inertias[-1] > threshold * inertias[-2]):
            return k - 1, inertias, labels[-2]
    return len(inertias), inertias, labels[-1]


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Silhouette score of a clustering; NaN when undefined (one cluster, or one point per cluster)."""
    from sklearn.metrics import silhouette_score

    n = len(np.unique(labels))
    if n < 2 or n >= len(x):
        return float("nan")
    return float(silhouette_score(np.asarray(x, dtype=np.float64), labels))
