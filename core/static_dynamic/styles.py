"""Four deterministic, temporally consistent restylings of a clip (methods.md section 1, Stylization).

The dissertation restyled videos with a learned stylization network whose weights are not
available. These four change colour, intensity and texture but keep every pixel's motion: each is
a fixed function of one frame, applied with the same parameters to every frame (no per-frame
randomness, which would add fake dynamics). Each takes and returns a uint8 clip ``(T, H, W, 3)``.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from core.errors import DataError

STYLE_VERSION = 1  # bump when a style's output changes, so cached restylings are recomputed


def _check(clip: np.ndarray) -> np.ndarray:
    a = np.asarray(clip)
    if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise DataError(f"a style needs a uint8 clip (T, H, W, 3), got {a.dtype} {a.shape}")
    return np.ascontiguousarray(a)


def edge_preserving(clip: np.ndarray) -> np.ndarray:
    """OpenCV's edge-preserving stylization: flat, painted colour regions with dark edges."""
    a = _check(clip)
    out = np.empty_like(a)
    for i, frame in enumerate(a):
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        out[i] = cv2.cvtColor(cv2.stylization(bgr, sigma_s=30, sigma_r=0.35), cv2.COLOR_BGR2RGB)
    return out


def pencil(clip: np.ndarray) -> np.ndarray:
    """OpenCV's colour pencil sketch: desaturated, hatched, light background."""
    a = _check(clip)
    out = np.empty_like(a)
    for i, frame in enumerate(a):
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        _, colour = cv2.pencilSketch(bgr, sigma_s=60, sigma_r=0.05, shade_factor=0.015)
        out[i] = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    return out


def _palette_lut() -> np.ndarray:
    """A 256-entry lookup table (3 channels) mapping luminance to a warm-to-teal colour ramp."""
    stops = np.array([[20, 12, 60], [140, 30, 90], [240, 120, 40], [250, 230, 150], [60, 200, 190]], float)
    x = np.linspace(0, 1, len(stops))
    t = np.linspace(0, 1, 256)
    return np.stack([np.interp(t, x, stops[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


_LUT = _palette_lut()


def palette(clip: np.ndarray) -> np.ndarray:
    """Hue rotation by 120 degrees, posterised to 6 levels, blended with a luminance colour ramp."""
    a = _check(clip)
    t, h, w = a.shape[:3]
    hsv = cv2.cvtColor(a.reshape(t * h, w, 3), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + 60) % 180).astype(np.uint8)
    rotated = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).reshape(a.shape)
    levels = 6
    poster = (np.floor(rotated / 256.0 * levels) * (255.0 / (levels - 1))).astype(np.float32)
    lum = cv2.cvtColor(a.reshape(t * h, w, 3), cv2.COLOR_RGB2GRAY).reshape(t, h, w)
    ramp = _LUT[lum].astype(np.float32)
    return np.clip(0.5 * poster + 0.5 * ramp, 0, 255).round().astype(np.uint8)


def _canvas(h: int, w: int) -> np.ndarray:
    """A fixed canvas-like texture in [0.55, 1.15], the same for every frame and every clip: ``(H, W)``."""
    rng = np.random.default_rng(20251126)
    noise = rng.random((h, w)).astype(np.float32)
    fibres = cv2.GaussianBlur(noise, (0, 0), sigmaX=max(w / 40, 0.8), sigmaY=max(h / 200, 0.3))
    grain = cv2.GaussianBlur(noise, (0, 0), 0.7)
    tex = 0.6 * fibres + 0.4 * grain
    tex = (tex - tex.min()) / max(float(np.ptp(tex)), 1e-6)
    return 0.55 + 0.6 * tex


def texture(clip: np.ndarray) -> np.ndarray:
    """Luminance modulated by a fixed canvas texture, with a sepia-blue split tone."""
    a = _check(clip).astype(np.float32)
    h, w = a.shape[1:3]
    lum = (0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]) / 255.0
    shade = lum * _canvas(h, w)[None]
    dark, light = np.array([30, 50, 90], np.float32), np.array([250, 225, 170], np.float32)
    toned = dark + (light - dark) * np.clip(shade, 0, 1)[..., None]
    return np.clip(0.75 * toned + 0.25 * a, 0, 255).round().astype(np.uint8)


STYLES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "edge_preserving": edge_preserving,
    "pencil": pencil,
    "palette": palette,
    "texture": texture,
}


def stylize(clip: np.ndarray, style: str) -> np.ndarray:
    """``clip`` ``(T, H, W, 3)`` uint8 restyled with one of :data:`STYLES`."""
    if style not in STYLES:
        raise DataError(f"unknown style {style!r}; the shipped styles are {', '.join(STYLES)}")
    return STYLES[style](clip)
