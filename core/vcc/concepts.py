"""Concepts of one layer (eq. 5.4-5.5): k-means over GAP'd segment features, small clusters pruned, and
(ACE's commonality filter) clusters drawn from too few distinct images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans

from core.kmeans_torch import kmeans
from core.vcc.config import Commonality, PruneSigmoid

DEFAULT_PRUNE = PruneSigmoid()


@dataclass
class LayerConcepts:
    """The kept concepts of a layer, largest first.

    ``centroids`` ``(m, C)``; ``members[c]`` indices (into the features given) of at most
    ``max_members`` members of concept ``c``, nearest its centroid first; ``sizes`` ``(m,)`` the
    whole cluster's size. Per input row: ``labels`` ``(t,)`` its concept (-1 when its cluster was
    pruned) and ``distances`` ``(t,)`` the L2 distance to its cluster's centroid. ``min_size`` is
    ``Y(t)``; ``cluster_sizes`` the sizes of all k clusters, pruned ones included;
    ``cluster_images`` the number of distinct images among each of the k clusters' members (-1 when the
    images were not given); ``n_pruned_size`` the clusters dropped by ``Y(t)``, ``n_pruned_commonality``
    those that passed it but failed the commonality filter.
    """

    centroids: np.ndarray
    members: list[np.ndarray]
    sizes: np.ndarray
    labels: np.ndarray
    distances: np.ndarray
    min_size: float
    cluster_sizes: np.ndarray
    cluster_images: np.ndarray | None = None
    n_pruned_size: int = 0
    n_pruned_commonality: int = 0

    def __len__(self) -> int:
        return len(self.centroids)


def discover_concepts(features: np.ndarray, n_concepts: int = 25, prune: PruneSigmoid | None = DEFAULT_PRUNE,
                      max_members: int = 50, n_init: int = 10, seed: int = 0, image_of: np.ndarray | None = None,
                      n_images: int | None = None, commonality: Commonality | None = None,
                      backend: str = "sklearn", device: str | torch.device | None = None) -> LayerConcepts:
    """k-means (L2) over ``features`` ``(t, C)``; clusters with fewer than ``prune(t)`` members dropped.

    ``k = min(n_concepts, t)``. ``prune=None`` keeps every cluster. With ``commonality`` (which needs
    ``image_of`` ``(t,)``, each row's image, and ``n_images``, the number of discovery images) a
    cluster must also pass :meth:`Commonality.keeps`. ``backend``: scikit-learn's ``KMeans``
    (``sklearn``) or :func:`core.kmeans_torch.kmeans` on ``device`` (``torch``).
    """
    x = np.asarray(features, dtype=np.float64)
    t = len(x)
    if t == 0:
        raise ValueError("no segment features to cluster")
    k = min(n_concepts, t)
    if backend == "torch":
        res = kmeans(x, k, n_init=n_init, seed=seed, device=device)
        assign, centers = res.labels, res.centers
    elif backend == "sklearn":
        km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x)
        assign, centers = km.labels_, km.cluster_centers_
    else:
        raise ValueError(f"unknown k-means backend {backend!r}")
    dist = np.linalg.norm(x - centers[assign], axis=1)
    counts = np.bincount(assign, minlength=k)
    min_size = prune(t) if prune is not None else 0.0
    if commonality is not None and (image_of is None or n_images is None):
        raise ValueError("the commonality filter needs each segment's image (image_of) and n_images")
    if image_of is not None:
        image_of = np.asarray(image_of)
        if len(image_of) != t:
            raise ValueError(f"image_of has {len(image_of)} entries for {t} features")
        distinct = np.array([len(np.unique(image_of[assign == c])) for c in range(k)], dtype=np.int64)
    else:
        distinct = np.full(k, -1, dtype=np.int64)
    big = [c for c in np.argsort(-counts, kind="stable") if counts[c] >= min_size and counts[c] > 0]
    kept = [c for c in big if commonality is None or commonality.keeps(int(distinct[c]), int(counts[c]),
                                                                          int(n_images))]
    labels = np.full(t, -1, dtype=np.int64)
    members = []
    for new, c in enumerate(kept):
        idx = np.flatnonzero(assign == c)
        labels[idx] = new
        members.append(idx[np.argsort(dist[idx], kind="stable")][:max_members])
    centroids = centers[kept].astype(np.float32) if kept else np.zeros((0, x.shape[1]), np.float32)
    return LayerConcepts(centroids, members, counts[kept].astype(np.int64), labels, dist, float(min_size),
                         counts.astype(np.int64), distinct, int(np.sum(counts > 0)) - len(big), len(big) - len(kept))


def nearest_concepts(features: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid (L2) of each row of ``features`` ``(n, C)``: ``(index (n,), distance (n,))``."""
    x = np.asarray(features, dtype=np.float64)
    q = np.asarray(centroids, dtype=np.float64)
    d2 = (x ** 2).sum(1)[:, None] - 2 * x @ q.T + (q ** 2).sum(1)[None]
    idx = np.argmin(d2, axis=1)
    return idx, np.sqrt(np.maximum(d2[np.arange(len(x)), idx], 0.0))
