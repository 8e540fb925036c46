"""Optical flow for videos, and its RGB rendering (the input of two-stream models' flow branch).

Flow arrays are float32 ``(2, T, H, W)``: channel 0 is the horizontal displacement ``dx``
(positive: rightwards), channel 1 the vertical ``dy`` (positive: downwards), in pixels per frame.
Flow images are uint8 ``(T, H, W, 3)`` RGB.
"""

from __future__ import annotations

import cv2
import numpy as np

from core.errors import DataError

# Farneback settings: a 3-level pyramid and a 15-pixel window suit 64-256 px frames with motions
# of a few pixels per frame.
FARNEBACK = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2,
             "flags": 0}


def _check_video(frames: np.ndarray, name: str = "frames") -> np.ndarray:
    a = np.asarray(frames)
    if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise DataError(f"{name}: expected a uint8 video of shape (T, H, W, 3), got {a.dtype} {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1 or a.shape[2] < 1:
        raise DataError(f"{name}: empty video {a.shape}")
    return a


def optical_flow(frames: np.ndarray) -> np.ndarray:
    """Dense Farneback flow between consecutive frames of a uint8 ``(T, H, W, 3)`` RGB video.

    Returns float32 ``(2, T, H, W)``: ``flow[:, t]`` is the motion from frame ``t`` to ``t + 1``
    (computed on grey frames). The last frame has no successor: its flow repeats the one before
    (``flow[:, T-1] == flow[:, T-2]``), so the flow stream has as many frames as the video. A
    single-frame video has zero flow.
    """
    video = _check_video(frames)
    T, H, W = video.shape[:3]
    out = np.zeros((2, T, H, W), np.float32)
    if T == 1:
        return out
    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in video]
    for t in range(T - 1):
        f = cv2.calcOpticalFlowFarneback(grey[t], grey[t + 1], None, **FARNEBACK)
        out[0, t], out[1, t] = f[..., 0], f[..., 1]
    out[:, T - 1] = out[:, T - 2]
    return out


def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-wheel rendering of a ``(2, T, H, W)`` flow as uint8 ``(T, H, W, 3)`` RGB.

    Hue is the direction (OpenCV HSV hue = angle of ``(dx, dy)`` / 2, so rightwards is red,
    downwards yellow-green, leftwards cyan, upwards violet; angles measured with ``y`` down),
    saturation is the magnitude divided by ``max_magnitude`` (default: the largest magnitude in
    this video, so each video uses the full range; clipped at 1), value is always 255. No motion
    is white.
    """
    f = np.asarray(flow, dtype=np.float32)
    if f.ndim != 4 or f.shape[0] != 2:
        raise DataError(f"flow: expected an array of shape (2, T, H, W), got {f.shape}")
    if max_magnitude is not None and not max_magnitude > 0:
        raise DataError(f"max_magnitude must be positive, got {max_magnitude!r}")
    _, T, H, W = f.shape
    mag, ang = cv2.cartToPolar(f[0].reshape(T * H, W), f[1].reshape(T * H, W), angleInDegrees=True)
    scale = float(mag.max()) if max_magnitude is None else float(max_magnitude)
    hsv = np.empty((T * H, W, 3), np.uint8)
    hsv[..., 0] = np.round(ang / 2.0).astype(np.int32) % 180
    hsv[..., 1] = np.clip(mag / scale * 255.0, 0, 255).round().astype(np.uint8) if scale > 0 else 0
    hsv[..., 2] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).reshape(T, H, W, 3)


def jitter_flow_rgb(flow_rgb: np.ndarray, hue_shift: float, saturation_scale: float) -> np.ndarray:
    """Recolour a flow image: the same hue rotation (degrees, any sign) and saturation factor on
    every frame of a uint8 ``(T, H, W, 3)`` RGB flow video; value is kept. Changes what the
    colours say about direction and speed while keeping where and when motion happens.
    """
    video = _check_video(flow_rgb, "flow_rgb")
    if not np.isfinite(hue_shift) or not np.isfinite(saturation_scale) or saturation_scale < 0:
        raise DataError(f"need a finite hue shift and a non-negative saturation scale, got "
                        f"{hue_shift!r}, {saturation_scale!r}")
    T, H, W = video.shape[:3]
    hsv = cv2.cvtColor(np.ascontiguousarray(video).reshape(T * H, W, 3), cv2.COLOR_RGB2HSV)
    shift = round(hue_shift / 2.0) % 180
    hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + shift) % 180).astype(np.uint8)
    hsv[..., 1] = np.clip(hsv[..., 1].astype(np.float32) * saturation_scale, 0, 255).round().astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).reshape(T, H, W, 3)
