"""Concepts of one layer (eq. 5.4-5.5): k-means over GAP'd segment features, small clusters pruned."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans

from core.vcc.config import PruneSigmoid

DEFAULT_PRUNE = PruneSigmoid()


@dataclass
class LayerConcepts:
    """The kept concepts of a layer, largest first.

    ``centroids`` ``(m, C)``; ``members[c]`` indices (into the features given) of at most
    ``max_members`` members of concept ``c``, nearest its centroid first; ``sizes`` ``(m,)`` the
    whole cluster's size. Per input row: ``labels`` ``(t,)`` its concept (-1 when its cluster was
    pruned) and ``distances`` ``(t,)`` the L2 distance to its cluster's centroid. ``min_size`` is
    ``Y(t)``; ``cluster_sizes`` the sizes of all k clusters, pruned ones included.
    """

    centroids: np.ndarray
    members: list[np.ndarray]
    sizes: np.ndarray
    labels: np.ndarray
    distances: np.ndarray
    min_size: float
    cluster_sizes: np.ndarray

    def __len__(self) -> int:
        return len(self.centroids)


def discover_concepts(features: np.ndarray, n_concepts: int = 25, prune: PruneSigmoid | None = DEFAULT_PRUNE,
                      max_members: int = 50, n_init: int = 10, seed: int = 0) -> LayerConcepts:
    """k-means (L2) over ``features`` ``(t, C)``; clusters with fewer than ``prune(t)`` members dropped.

    ``k = min(n_concepts, t)``. ``prune=None`` keeps every cluster.
    """
    x = np.asarray(features, dtype=np.float64)
    t = len(x)
    if t == 0:
        raise ValueError("no segment features to cluster")
    k = min(n_concepts, t)
    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x)
    assign = km.labels_
    dist = np.linalg.norm(x - km.cluster_centers_[assign], axis=1)
    counts = np.bincount(assign, minlength=k)
    min_size = prune(t) if prune is not None else 0.0
    kept = [c for c in np.argsort(-counts, kind="stable") if counts[c] >= min_size and counts[c] > 0]
    labels = np.full(t, -1, dtype=np.int64)
    members = []
    for new, c in enumerate(kept):
        idx = np.flatnonzero(assign == c)
        labels[idx] = new
        members.append(idx[np.argsort(dist[idx], kind="stable")][:max_members])
    centroids = km.cluster_centers_[kept].astype(np.float32) if kept else np.zeros((0, x.shape[1]), np.float32)
    return LayerConcepts(centroids, members, counts[kept].astype(np.int64), labels, dist, float(min_size),
                         counts.astype(np.int64))


def nearest_concepts(features: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid (L2) of each row of ``features`` ``(n, C)``: ``(index (n,), distance (n,))``."""
    x = np.asarray(features, dtype=np.float64)
    q = np.asarray(centroids, dtype=np.float64)
    d2 = (x ** 2).sum(1)[:, None] - 2 * x @ q.T + (q ** 2).sum(1)[None]
    idx = np.argmin(d2, axis=1)
    return idx, np.sqrt(np.maximum(d2[np.arange(len(x)), idx], 0.0))
