"""Tubelet proposals (eq. 4.1): SLIC over one video's feature volume of one head."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from skimage.segmentation import slic

from core.batching import BatchSize


@dataclass
class Tubelets:
    """One video's tubelets of one head.

    ``labels`` int32 ``(Ts, Hs, Ws)``: the tubelet index of every voxel of the segmentation grid,
    ``-1`` where a dropped (too small) tubelet was; ``features`` float32 ``(n, d)``: the mean feature
    inside each tubelet.
    """

    labels: np.ndarray
    features: np.ndarray

    @property
    def count(self) -> int:
        return int(self.features.shape[0])

    def masks(self) -> np.ndarray:
        """Binary supports ``(n, Ts, Hs, Ws)``."""
        return tubelet_masks(self.labels, self.count)


def segmentation_grid(video_shape: Sequence[int], token_grid: Sequence[int], upsample: bool = True,
                      upsample_frames: bool = True, spatial_scale: float = 0.5) -> tuple[int, int, int]:
    """The ``(Ts, Hs, Ws)`` grid SLIC runs on: the token grid, or the input's frames (or the token grid's)
    by ``spatial_scale`` x the input's height and width."""
    if not upsample:
        return (int(token_grid[0]), int(token_grid[1]), int(token_grid[2]))
    t, h, w = video_shape
    ts = int(t) if upsample_frames else int(token_grid[0])
    return ts, max(1, round(h * spatial_scale)), max(1, round(w * spatial_scale))


def upsample_features(feat: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Trilinear upsampling of ``(T', H', W', d)`` features to ``(*size, d)``."""
    if tuple(feat.shape[:3]) == tuple(size):
        return feat
    vol = feat.permute(3, 0, 1, 2).unsqueeze(0)  # (1, d, T', H', W')
    up = F.interpolate(vol, size=tuple(int(s) for s in size), mode="trilinear", align_corners=False)
    return up[0].permute(1, 2, 3, 0)


def slic_labels(feat: np.ndarray, n_segments: int = 12, compactness: float = 0.1,
                max_num_iter: int = 10) -> np.ndarray:
    """SLIC of a ``(T, H, W, d)`` feature volume, min-max scaled (one scalar min and max) as the released
    code does: int32 labels ``(T, H, W)`` numbered 0 .. n-1, a partition of the volume."""
    f = np.asarray(feat, dtype=np.float64)
    lo, hi = float(f.min()), float(f.max())
    f = (f - lo) / (hi - lo) if hi > lo else np.zeros_like(f)
    labels = slic(f, n_segments=n_segments, compactness=compactness, max_num_iter=max_num_iter,
                  channel_axis=-1, convert2lab=False, start_label=0)
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.int32)


def drop_small(labels: np.ndarray, min_fraction: float) -> np.ndarray:
    """Set tubelets under ``min_fraction`` of the volume to -1 and renumber the rest 0 .. n-1 (in order)."""
    valid = labels >= 0
    counts = np.bincount(labels[valid].ravel()) if valid.any() else np.zeros(0, np.int64)
    keep = counts >= min_fraction * labels.size
    new_id = np.full(len(counts) + 1, -1, dtype=np.int32)  # the extra slot maps -1 to -1
    new_id[:-1][keep] = np.arange(int(keep.sum()), dtype=np.int32)
    return new_id[labels]


def tubelet_masks(labels: np.ndarray, count: int | None = None) -> np.ndarray:
    """Label map ``(T, H, W)`` -> binary supports ``(n, T, H, W)``."""
    n = int(labels.max()) + 1 if count is None else count
    return labels[None] == np.arange(n).reshape(-1, 1, 1, 1)


def tubelet_means(labels: np.ndarray, feat: np.ndarray | torch.Tensor, count: int) -> np.ndarray:
    """Mean of ``feat`` ``(T, H, W, d)`` over each tubelet of ``labels``: ``(count, d)`` float32."""
    f = torch.as_tensor(np.asarray(feat), dtype=torch.float64).reshape(-1, feat.shape[-1])
    lab = torch.from_numpy(labels.reshape(-1).astype(np.int64))
    ok = lab >= 0
    sums = torch.zeros(count, f.shape[1], dtype=torch.float64).index_add_(0, lab[ok], f[ok])
    n = torch.bincount(lab[ok], minlength=count).clamp_min(1).unsqueeze(1)
    return (sums / n).float().numpy()


def video_tubelets(feat: torch.Tensor, grid: Sequence[int], n_segments: int = 12, compactness: float = 0.1,
                   min_fraction: float = 0.001, max_num_iter: int = 10) -> Tubelets:
    """Tubelets of one video and head from its token-grid features ``(T', H', W', d)``: upsample to
    ``grid``, SLIC, drop tubelets under ``min_fraction`` of the volume, mean feature per tubelet (of the
    upsampled, unscaled features)."""
    up = upsample_features(feat.float(), grid).numpy()
    labels = drop_small(slic_labels(up, n_segments, compactness, max_num_iter), min_fraction)
    count = int(labels.max()) + 1
    return Tubelets(labels=labels, features=tubelet_means(labels, up, count))


def batch_tubelets(feat: torch.Tensor | Sequence[torch.Tensor], grid: Sequence[int], n_segments: int = 12,
                   compactness: float = 0.1, min_fraction: float = 0.001, max_num_iter: int = 10,
                   device: torch.device | str = "cpu", chunk: int | BatchSize = 16,
                   dtype: torch.dtype = torch.float64) -> list[Tubelets]:
    """:func:`video_tubelets` of ``B`` volumes at once with the torch SLIC (:mod:`core.vtcd.slic_torch`):
    ``feat`` ``(B, T', H', W', d)`` token-grid features, or ``B`` such volumes ``(T', H', W', d)`` (views,
    e.g. of memory-mapped features: only a chunk is read at a time), every video and head of a layer ->
    one :class:`Tubelets` per volume. Runs ``chunk`` volumes at a time on ``device`` (halved while a chunk
    runs out of memory); upsampling and the tubelet means run there in float32, SLIC in ``dtype`` (float64:
    scikit-image's labels exactly)."""
    from core.vtcd.slic_torch import slic_torch

    dev = torch.device(device)
    size = tuple(int(s) for s in grid)
    bs = chunk if isinstance(chunk, BatchSize) else BatchSize(chunk, "SLIC volumes", dev)

    def run(start: int, stop: int) -> list[Tubelets]:
        part = feat[start:stop]
        f = (part if isinstance(part, torch.Tensor) else torch.stack(list(part))).to(device=dev, dtype=torch.float32)
        b, d = f.shape[0], f.shape[-1]
        if tuple(f.shape[1:4]) != size:
            f = F.interpolate(f.permute(0, 4, 1, 2, 3), size=size, mode="trilinear",
                              align_corners=False).permute(0, 2, 3, 4, 1)
        labels = slic_torch(f, n_segments, compactness, max_num_iter, dtype=dtype).cpu().numpy()
        flat = f.reshape(b, -1, d)
        out = []
        for i in range(b):
            lab = drop_small(labels[i].astype(np.int32), min_fraction)
            count = int(lab.max()) + 1
            idx = torch.from_numpy(lab.reshape(-1).astype(np.int64)).to(dev)
            ok = idx >= 0
            sums = torch.zeros(count, d, dtype=torch.float64, device=dev).index_add_(0, idx[ok], flat[i][ok].double())
            n = torch.bincount(idx[ok], minlength=count).clamp_min(1).unsqueeze(1)
            out.append(Tubelets(labels=lab, features=(sums / n).float().cpu().numpy()))
        return out

    return [t for part in bs.run(len(feat), run) for t in part]
