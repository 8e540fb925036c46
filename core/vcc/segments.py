"""Top-down feature-space segments (eq. 5.1-5.3) and the segment images made from them.

All layers' maps share one ``G x G`` grid (methods.md), so a parent's mask needs no resampling:
the deepest layer is split per image with k-means, then each segment of layer n+1 is split at
layer n with maskSLIC inside its mask. At every layer the segments of an image partition it, and
the children of a segment partition the segment's mask exactly.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from skimage.segmentation import slic
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from threadpoolctl import threadpool_limits

from core.data.images import preprocess_images
from core.models.bundle import Preprocessing


@dataclass
class Segments:
    """Every segment of every image at every selected layer, as arrays (a segment's id is its row).

    ``masks`` ``(N, G, G)`` bool on the shared grid; ``image`` ``(N,)`` index of the source image;
    ``layer`` ``(N,)`` index into ``layers`` (shallow to deep); ``parent`` ``(N,)`` id of the segment
    it was cut from at the next deeper layer (-1 at the deepest); ``score`` ``(N,)`` silhouette of
    the split that made it (NaN where the parent stayed whole, or at the deepest layer's whole image).
    """

    layers: list[str]
    masks: np.ndarray
    image: np.ndarray
    layer: np.ndarray
    parent: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def grid(self) -> int:
        return int(self.masks.shape[-1])

    def ids(self, layer: str | int) -> np.ndarray:
        """Ids of the segments at ``layer`` (a name or an index into ``layers``), in id order."""
        li = self.layers.index(layer) if isinstance(layer, str) else int(layer)
        return np.flatnonzero(self.layer == li)

    def children(self, segment: int) -> np.ndarray:
        return np.flatnonzero(self.parent == segment)

    def area(self) -> np.ndarray:
        """Fraction of the image each segment covers: ``(N,)``."""
        return self.masks.reshape(len(self), -1).mean(axis=1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for an ``.npz`` (the layer names go elsewhere, e.g. JSON)."""
        return {"masks": self.masks, "image": self.image, "layer": self.layer, "parent": self.parent,
                "score": self.score}

    @classmethod
    def from_arrays(cls, layers: Sequence[str], arrays: dict[str, np.ndarray]) -> Segments:
        return cls(list(layers), np.asarray(arrays["masks"], dtype=bool), np.asarray(arrays["image"], dtype=np.int64),
                   np.asarray(arrays["layer"], dtype=np.int64), np.asarray(arrays["parent"], dtype=np.int64),
                   np.asarray(arrays["score"], dtype=np.float64))


# ----------------------------------------------------------------------------------------------
# Splitting one region


def _silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    n_labels = len(np.unique(labels))
    if n_labels < 2 or n_labels > len(x) - 1:
        return float("nan")
    return float(silhouette_score(x, labels))


def _tidy(labels: np.ndarray, x: np.ndarray, min_pixels: int) -> np.ndarray:
    """Consecutive labels 0..k-1 with pieces under ``min_pixels`` merged into the sibling whose
    mean feature is nearest (dropping them would leave holes in the parent's mask)."""
    labels = np.unique(labels, return_inverse=True)[1]
    while True:
        counts = np.bincount(labels)
        small = int(np.argmin(counts))
        if len(counts) < 2 or counts[small] >= min_pixels:
            return labels
        means = np.stack([x[labels == k].mean(axis=0) for k in range(len(counts))])
        d = np.linalg.norm(means - means[small], axis=1)
        d[small] = np.inf
        labels[labels == small] = int(np.argmin(d))
        labels = np.unique(labels, return_inverse=True)[1]


def _candidate(features: np.ndarray, mask: np.ndarray, k: int, method: str, compactness: float,
               seed: int, n_init: int) -> np.ndarray:
    """Labels ``(n_masked,)`` of one split of the masked pixels into about ``k`` pieces."""
    x = features[mask]
    if method == "kmeans":
        return KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(x)
    with warnings.catch_warnings():
        # maskSLIC seeds its centres with scipy's kmeans2, which warns about empty clusters it then handles
        warnings.filterwarnings("ignore", message="One of the clusters is empty")
        lab = slic(features.astype(np.float64), n_segments=k, mask=mask, channel_axis=-1, convert2lab=False,
                   compactness=compactness, start_label=1)[mask]
    if (lab == 0).any():
        # maskSLIC labels every masked pixel in practice; should one be left out, it joins the
        # piece whose mean feature is nearest.
        ks = [v for v in np.unique(lab) if v]
        if not ks:
            return np.zeros(len(x), dtype=np.int64)
        means = np.stack([x[lab == v].mean(axis=0) for v in ks])
        free = lab == 0
        lab[free] = np.asarray(ks)[np.argmin(((x[free, None] - means[None]) ** 2).sum(-1), axis=1)]
    return lab


def split_region(features: np.ndarray, mask: np.ndarray, method: Literal["kmeans", "slic"] = "slic",
                 split_range: tuple[int, int] = (2, 4), threshold: float = 0.0, compactness: float = 0.8,
                 min_pixels: int = 1, seed: int = 0, n_init: int = 4,
                 min_size: int = 0) -> tuple[list[np.ndarray], float]:
    """Split the masked pixels of ``features`` ``(G, G, C)`` into pieces: ``(masks, score)``.

    Tries every piece count in ``split_range`` (inclusive; maskSLIC may return more pieces than
    asked when a piece is not connected) and keeps the split with the best silhouette score of the
    masked features; the region stays whole (one mask, score NaN) when no split scores above
    ``threshold``, and, without trying, when it has fewer than ``min_size`` cells (0: every region
    is tried, the methods' behaviour). The returned ``(G, G)`` masks partition ``mask``.
    """
    mask = np.asarray(mask, dtype=bool)
    if int(mask.sum()) < min_size:
        return [mask.copy()], float("nan")
    x = features[mask].astype(np.float64)
    best_labels, best_score = None, -np.inf
    lo, hi = split_range
    # A region has at most G*G pixels: one thread is fastest, and BLAS/OpenMP thread pools spinning on
    # a busy machine made these tiny k-means fits 40x slower.
    with threadpool_limits(limits=1):
        for k in range(lo, hi + 1):
            if k >= len(x):
                break
            labels = _tidy(_candidate(features, mask, k, method, compactness, seed, n_init), x, min_pixels)
            score = _silhouette(x, labels)
            if np.isfinite(score) and score > best_score:
                best_labels, best_score = labels, score
    if best_labels is None or best_score <= threshold:
        return [mask.copy()], float("nan")
    pieces = []
    for k in range(int(best_labels.max()) + 1):
        m = np.zeros_like(mask)
        m[mask] = best_labels == k
        pieces.append(m)
    return pieces, float(best_score)


def _image_segments(grids: list[np.ndarray], split_range: tuple[int, int], threshold: float, compactness: float,
                    min_pixels: int, seed: int, n_init: int,
                    min_size: int = 0) -> list[list[tuple[int, np.ndarray, float]]]:
    """One image's segments, deepest layer first: per layer a list of ``(parent, mask, score)`` with
    ``parent`` the index into the next deeper layer's list (-1 at the deepest)."""
    g = grids[0].shape[0]
    out: list[list[tuple[int, np.ndarray, float]]] = []
    for li in range(len(grids) - 1, -1, -1):
        deepest = li == len(grids) - 1
        parents = [(-1, np.ones((g, g), dtype=bool))] if deepest else [(p, m) for p, (_, m, _) in enumerate(out[-1])]
        level = []
        for pid, pmask in parents:
            pieces, s = split_region(grids[li], pmask, "kmeans" if deepest else "slic", split_range, threshold,
                                     compactness, min_pixels, seed, n_init, min_size)
            level.extend((pid, m, s) for m in pieces)
        out.append(level)
    return out


def top_down_segments(grids: dict[str, np.ndarray], layers: Sequence[str], split_range: tuple[int, int] = (2, 4),
                      threshold: float = 0.0, compactness: float = 0.8, min_fraction: float = 0.001,
                      seed: int = 0, n_init: int = 4, n_jobs: int = 1, min_size: int = 0) -> Segments:
    """Segments of every image at every layer (eq. 5.2), deepest layer first in id order.

    ``grids`` maps each layer to its ``(B, G, G, C)`` feature grid; ``layers`` runs shallow to deep.
    The deepest layer's image is split with k-means, each segment of layer n+1 with maskSLIC on
    layer n's features inside its mask. Images are independent: ``n_jobs`` > 1 segments them in that
    many processes (the result is the same as with one). ``min_size`` (grid cells; 0: off) keeps a
    region under that size whole at every shallower layer instead of splitting it further
    (:func:`split_region`), which bounds the segment count of deep stacks of layers.
    """
    layers = list(layers)
    b, g = grids[layers[0]].shape[:2]
    min_pixels = max(1, int(np.ceil(min_fraction * g * g)))
    args = (tuple(split_range), threshold, compactness, min_pixels, seed, n_init, int(min_size))
    per_image = [[np.ascontiguousarray(grids[name][i]) for name in layers] for i in range(b)]
    if n_jobs > 1 and b > 1:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=min(n_jobs, b))(delayed(_image_segments)(gi, *args) for gi in per_image)
    else:
        results = [_image_segments(gi, *args) for gi in per_image]
    masks, image, layer, parent, score = [], [], [], [], []
    previous: list[list[int]] = [[] for _ in range(b)]  # global ids of each image's segments one layer deeper
    for depth, li in enumerate(range(len(layers) - 1, -1, -1)):
        current: list[list[int]] = []
        for img in range(b):
            ids = []
            for pid, m, s in results[img][depth]:
                ids.append(len(masks))
                masks.append(m)
                image.append(img)
                layer.append(li)
                parent.append(previous[img][pid] if pid >= 0 else -1)
                score.append(s)
            current.append(ids)
        previous = current
    return Segments(layers, np.stack(masks), np.asarray(image, dtype=np.int64), np.asarray(layer, dtype=np.int64),
                    np.asarray(parent, dtype=np.int64), np.asarray(score, dtype=np.float64))


# ----------------------------------------------------------------------------------------------
# Segment images (eq. 5.3, made the way ACE and the released code make them)


def upsample_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A ``(G, G)`` grid mask at image size ``(H, W)`` by nearest cell (the grid spans the whole image)."""
    g_h, g_w = mask.shape
    h, w = size
    rows = np.minimum(np.arange(h) * g_h // h, g_h - 1)
    cols = np.minimum(np.arange(w) * g_w // w, g_w - 1)
    return mask[rows][:, cols]


def segment_crop(image: np.ndarray, mask: np.ndarray, fill: int | None = 117) -> np.ndarray:
    """The segment's bounding-box crop of ``image`` ``(H, W, 3)`` uint8, pixels outside the segment
    set to ``fill`` (mean grey; ``None`` keeps them, for display)."""
    full = upsample_mask(mask, image.shape[:2])
    rows, cols = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
    if len(rows) == 0:
        raise ValueError("empty segment mask")
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    crop = image[sl].copy()
    if fill is not None:
        crop[~full[sl]] = fill
    return crop


def segment_inputs(images: Sequence[np.ndarray], segments: Segments, ids: Sequence[int] | np.ndarray,
                   prep: Preprocessing, fill: int = 117) -> torch.Tensor:
    """Model inputs ``(len(ids), 3, H, W)`` of the given segments: crop, fill, resize, normalise."""
    crops = [segment_crop(images[segments.image[i]], segments.masks[i], fill) for i in ids]
    return preprocess_images(crops, prep)
