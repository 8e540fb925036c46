"""Pictures of VTCD concepts: a concept's support highlighted in a clip (the rest dimmed), frame strips.

Pure numpy in and out (no model, no files): the ``vtcd`` job renders its H.264 media with these, and
the dashboard uses the same functions to show a concept in a video that has no pre-rendered clip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HIGHLIGHT = (255, 196, 0)
"""Outline colour of a highlighted support (amber: visible on most footage)."""
GROUND_TRUTH = (0, 230, 255)
"""Outline colour of a ground-truth object (cyan: apart from the amber concept border)."""


def concept_map(labels: np.ndarray, tubelet_video: np.ndarray, tubelet_id: np.ndarray,
                assignment: np.ndarray) -> np.ndarray:
    """The concept of every voxel of one head, int16 ``(V, Ts, Hs, Ws)`` (-1: none), from the tubelet label
    maps ``labels`` ``(V, Ts, Hs, Ws)`` (-1: dropped) and each tubelet's video, id and concept."""
    labels = np.asarray(labels)
    v = labels.shape[0]
    width = int(labels.max()) + 2 if labels.size else 1
    lut = np.full((v, width), -1, dtype=np.int16)  # the last column maps label -1
    lut[np.asarray(tubelet_video, int), np.asarray(tubelet_id, int)] = np.asarray(assignment, np.int16)
    flat = np.where(labels < 0, width - 1, labels).reshape(v, -1)
    return np.take_along_axis(lut, flat, axis=1).reshape(labels.shape)


def resize_nearest(volume: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of the first three axes of ``volume`` ``(T, H, W, ...)`` to ``shape``
    (cell centres: a voxel of the output takes the input voxel its centre falls in)."""
    volume = np.asarray(volume)
    idx = [np.minimum((np.arange(n) + 0.5) * volume.shape[a] / n, volume.shape[a] - 1).astype(int)
           for a, n in enumerate(shape)]
    return volume[np.ix_(*idx)] if volume.ndim == 3 else volume[idx[0]][:, idx[1]][:, :, idx[2]]


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """``(T, H, W, ...)`` repeated ``factor`` times along H and W (crisp pixels)."""
    if factor <= 1:
        return np.asarray(frames)
    return np.repeat(np.repeat(np.asarray(frames), factor, axis=1), factor, axis=2)


def display_factor(height: int, width: int, min_side: int = 128) -> int:
    """The integer zoom that brings the shorter side of a frame to at least ``min_side`` pixels."""
    return max(1, -(-int(min_side) // max(1, min(int(height), int(width)))))


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The inner border (``width`` pixels) of each frame of a bool ``(T, H, W)`` mask."""
    mask = np.asarray(mask, dtype=bool)
    inner = mask.copy()
    for _ in range(max(1, width)):
        shrunk = inner.copy()
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        shrunk[:, :, 1:] &= inner[:, :, :-1]
        shrunk[:, :, :-1] &= inner[:, :, 1:]
        shrunk[:, 0] = shrunk[:, -1] = False
        shrunk[:, :, 0] = shrunk[:, :, -1] = False
        inner = shrunk
    return mask & ~inner


def highlight(frames: np.ndarray, support: np.ndarray, factor: int = 1, dim: float = 0.3,
              color: Sequence[int] = HIGHLIGHT, line: int | None = None) -> np.ndarray:
    """A clip with one concept's support shown: inside as is, outside dimmed to ``dim`` of its brightness
    (and desaturated), the border drawn in ``color``.

    ``frames`` uint8 ``(T, H, W, 3)``; ``support`` bool on any ``(T', H', W')`` grid (resized to the clip,
    nearest); ``factor`` integer zoom of the output. Returns uint8 ``(T, H * factor, W * factor, 3)``.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    big = upscale(frames, factor).astype(np.float32)
    mask = resize_nearest(np.asarray(support, dtype=bool), big.shape[:3])
    grey = big.mean(-1, keepdims=True)
    dimmed = dim * (0.4 * big + 0.6 * grey)
    out = np.where(mask[..., None], big, dimmed)
    border = outline(mask, line if line is not None else max(1, factor // 2))
    out[border] = np.asarray(color, dtype=np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def draw_outline(frames: np.ndarray, mask: np.ndarray, color: Sequence[int] = GROUND_TRUTH,
                 line: int | None = None) -> np.ndarray:
    """``frames`` uint8 ``(T, H, W, 3)`` with the border of ``mask`` (bool on any ``(T', H', W')`` grid,
    resized to the frames, nearest) drawn in ``color``; ``line`` pixels wide (default: one per 64 pixels of
    the shorter side, at least 1)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    big = resize_nearest(np.asarray(mask, dtype=bool), frames.shape[:3])
    width = line if line is not None else max(1, min(frames.shape[1:3]) // 64)
    out = frames.copy()
    out[outline(big, width)] = np.asarray(color, dtype=np.uint8)
    return out


def frame_strip(frames: np.ndarray) -> np.ndarray:
    """``(T, H, W, 3)`` frames side by side: one ``(H, T * W, 3)`` image (the player's sprite sheet)."""
    frames = np.asarray(frames)
    t, h, w, c = frames.shape
    return frames.transpose(1, 0, 2, 3).reshape(h, t * w, c)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """|a & b| / |a | b| of two bool arrays (0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0
