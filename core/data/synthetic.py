"""Synthetic video benchmark with a known static or dynamic class factor, and ground truth.

Each video shows a *target* object (a shape filled with a texture cut from a real photo) over a
static background (a crop of another real photo), optionally with distractor objects and a static
occluder. The class is defined by one factor:

- ``task="appearance"``: the target's identity (shape + texture, :data:`APPEARANCES`); its motion
  is random. A static task: one frame is enough.
- ``task="motion"``: how the target moves (:data:`MOTIONS`); its identity is random. A dynamic
  task: opposite directions are exact time reversals of each other (see below), so no single
  frame tells them apart.
- ``task="both"``: 4 identities x 4 motions (left/right, cw/ccw), named ``"<appearance>/<motion>"``.
- ``task="occlusion"`` (:data:`OCCLUSION_OUTCOMES`): the target moves towards a paper strip wider
  than itself, passes fully behind it and stays hidden for a while, then ``passes`` (re-emerges on
  the far side), ``returns`` (re-emerges on the side it came from) or stays ``hidden`` to the end.
  All three are the same clip up to the end of the hidden stretch; which side it came from is
  random, so the last frame alone cannot tell ``passes`` from ``returns``: the model has to relate
  the re-emergence to the entry, across the occlusion. The strip is always there (id after the
  distractors, kind ``"occluder"``), and the video carries ``amodal``: the target's full
  silhouette per frame, hidden parts included (TCOW's amodal target masks).

**Time reversal.** Each opposite pair (``left_to_right``/``right_to_left``, ``down``/``up``,
``rotate_cw``/``rotate_ccw``, ``approach``/``recede``) draws ONE trajectory (start and end
positions, size, angle, per-frame jitter) from the same random stream and renders it forwards for
the first member and backwards for the second. So ``make_video(c, i, label=b).frames`` equals
``make_video(c, i, label=a).frames[::-1]`` for the two members ``a``, ``b`` of a pair (distractors
and everything else included): the two classes have identical distributions of start and end
frames, sizes and blur.

**Flash.** The target stays in place and switches on and off (random on and off lengths of 2-4
frames, random phase). On "off" frames it is not drawn at all, so its mask is empty and its track
is NaN there: the mask is always exactly where the object is drawn.

**Instance ids** in ``masks`` (uint8, ``(T, H, W)``): 0 background, 1 the target, 2 ..
``distractors + 1`` the distractors, then the occluder (id ``distractors + 2``) when enabled.
Drawing order (back to front): background, distractors, target, occluder; masks show the
*visible* part of each object after occlusion. ``SyntheticVideo.kinds`` names each id >= 1.

Everything is a deterministic function of ``(config, index)``: ``make_video`` seeds
``np.random.default_rng([config.seed, index])``. Splits use disjoint index ranges
(:data:`SPLIT_OFFSETS`), so train, val and test never share a video.

Rendering is OpenCV + NumPy on uint8 arrays (a few ms per 16x112x112 video on one CPU core).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch

from core.errors import DataError

GENERATOR_VERSION = 1  # bump whenever the rendering changes: it invalidates cached splits

TASKS = ("appearance", "motion", "both", "occlusion")
OCCLUSION_OUTCOMES = ("passes", "returns", "hidden")
MOTIONS = ("left_to_right", "right_to_left", "up", "down", "rotate_cw", "rotate_ccw", "approach", "recede",
           "flash")

# motion -> (trajectory kind, rendered backwards). The forward member of a pair: x increasing,
# y increasing (down), angle increasing clockwise on screen, size increasing.
_MOTION_KIND: dict[str, tuple[str, bool]] = {
    "left_to_right": ("translate_x", False), "right_to_left": ("translate_x", True),
    "down": ("translate_y", False), "up": ("translate_y", True),
    "rotate_cw": ("rotate", False), "rotate_ccw": ("rotate", True),
    "approach": ("scale", False), "recede": ("scale", True),
    "flash": ("flash", False),
}
OPPOSITE = {"left_to_right": "right_to_left", "right_to_left": "left_to_right", "up": "down", "down": "up",
            "rotate_cw": "rotate_ccw", "rotate_ccw": "rotate_cw", "approach": "recede", "recede": "approach"}


@dataclass(frozen=True)
class _Texture:
    """A texture source: a region ``(y0, y1, x0, x1)`` of a bundled photo (None: all of it),
    a tint for grey photos, and the side range (source pixels) of the square cut per video."""

    photo: str
    region: tuple[int, int, int, int] | None
    side: tuple[int, int]
    tint: tuple[int, int, int] | None = None


# Object identities: (name, shape, texture). Shapes have no full rotational symmetry, so rotation
# shows in the mask (the disk has a wedge cut out, the ring a gap).
_APPEARANCE_SPECS: tuple[tuple[str, str, _Texture], ...] = (
    ("brick_square", "square", _Texture("brick", None, (150, 220), (205, 92, 62))),
    ("grass_triangle", "triangle", _Texture("grass", None, (60, 100), (96, 178, 70))),
    ("gravel_pacman", "pacman", _Texture("gravel", None, (90, 150), (112, 146, 222))),
    ("fur_star", "star", _Texture("chelsea", (0, 95, 130, 330), (60, 90))),
    ("coffee_cross", "cross", _Texture("coffee", (40, 210, 150, 360), (90, 150))),
    ("flag_ring", "ring", _Texture("astronaut", (0, 230, 0, 70), (50, 75))),
    ("pagoda_heart", "heart", _Texture("china", (90, 330, 200, 305), (70, 110))),
    ("dahlia_crescent", "crescent", _Texture("flower", (120, 340, 220, 420), (80, 140))),
)
APPEARANCES = tuple(name for name, _, _ in _APPEARANCE_SPECS)
SHAPES = tuple(shape for _, shape, _ in _APPEARANCE_SPECS)

# Backgrounds: other bundled photos (never an object's texture), with the region to crop from.
_BACKGROUNDS: tuple[tuple[str, tuple[int, int, int, int] | None], ...] = (
    ("rocket", None), ("camera", None), ("moon", None), ("coins", None),
    ("immunohistochemistry", None), ("retina", (330, 1080, 330, 1080)), ("hubble_deep_field", None),
    ("stereo_motorcycle", None),
)
_OCCLUDER_PHOTO = "page"  # a strip of printed paper

# 'both' task: a subset so that it stays small.
BOTH_APPEARANCES = APPEARANCES[:4]
BOTH_MOTIONS = ("left_to_right", "right_to_left", "rotate_cw", "rotate_ccw")

# Index offsets of the splits: disjoint ranges, multiples of every class count (9, 8, 16), so
# ``index % n_classes`` stays balanced inside each split.
SPLIT_OFFSETS = {"train": 0, "val": 144 << 40, "test": 2 * (144 << 40)}

OBJECT_SIZE = (0.18, 0.30)  # target diameter (circumscribed circle) as a fraction of the frame side
DISTRACTOR_SCALE = (0.6, 0.85)  # distractor size relative to the target's
MAX_DISTRACTORS = len(APPEARANCES) - 1
BACKGROUND_CROP = (0.35, 0.9)  # background crop side as a fraction of the photo's shorter side


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate. ``blur`` is the sigma (pixels) of a Gaussian blur applied to every frame
    (0: none). ``distractors`` extra objects (other identities, smaller, behind the target);
    ``occluder``: a static paper strip in front of everything."""

    task: str
    frames: int = 16
    size: int = 112
    distractors: int = 0
    occluder: bool = False
    blur: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DataError(f"unknown synthetic task {self.task!r}; choose one of {', '.join(TASKS)}")
        for name, lo, hi in (("frames", 4, 512), ("size", 32, 1024), ("distractors", 0, MAX_DISTRACTORS)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or not lo <= v <= hi:
                raise DataError(f"synthetic {name} must be an integer in [{lo}, {hi}], got {v!r}")
        if not isinstance(self.occluder, bool | np.bool_):
            raise DataError(f"synthetic occluder must be true or false, got {self.occluder!r}")
        if (isinstance(self.blur, bool) or not isinstance(self.blur, int | float | np.number)
                or not 0.0 <= float(self.blur) <= self.size / 8):
            raise DataError(f"synthetic blur must be a sigma in [0, {self.size / 8:g}] pixels, got {self.blur!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer) or self.seed < 0:
            raise DataError(f"synthetic seed must be a non-negative integer, got {self.seed!r}")

    @property
    def n_classes(self) -> int:
        return len(class_names(self.task))

    @property
    def n_objects(self) -> int:
        """Instance ids in the masks, background excluded."""
        return 1 + self.distractors + int(self.has_occluder)

    @property
    def has_occluder(self) -> bool:
        """Whether the videos hold the occluder strip (always in the occlusion task)."""
        return bool(self.occluder) or self.task == "occlusion"


@dataclass
class SyntheticVideo:
    """One rendered video with its ground truth.

    ``frames`` uint8 ``(T, H, W, 3)`` RGB; ``masks`` uint8 ``(T, H, W)`` visible instance ids
    (module docstring); ``tracks`` float32 ``(n_objects, T, 2)`` centroid ``(x, y)`` of each
    object's visible mask (row ``k`` is instance id ``k + 1``; NaN where invisible); ``boxes``
    float32 ``(n_objects, T, 4)`` visible-mask box ``(x0, y0, x1, y1)`` in pixel-edge coordinates
    (``x1`` = last column + 1; NaN where invisible); ``background`` uint8 ``(H, W, 3)`` the static
    background (blurred like the frames); ``label`` the class index in ``class_names(task)``;
    ``appearance`` and ``motion`` the target's indices in :data:`APPEARANCES` and :data:`MOTIONS`;
    ``kinds`` the kind of each instance id >= 1 ("target", "distractor", "occluder"); ``seed``
    and ``index`` the config's seed and the video's index, all that it was generated from.
    Occlusion task only: ``motion`` is -1 and ``amodal`` bool ``(T, H, W)`` is the target's whole
    silhouette, hidden parts included (None in the other tasks).

    With ``blur == 0`` every pixel outside all masks equals ``background`` and every pixel inside
    them is an object's; with blur the masks are those of the sharp render.
    """

    frames: np.ndarray
    masks: np.ndarray
    tracks: np.ndarray
    boxes: np.ndarray
    background: np.ndarray
    label: int
    appearance: int
    motion: int
    seed: int
    index: int
    kinds: tuple[str, ...] = field(default_factory=tuple)
    amodal: np.ndarray | None = None

    def instance_mask(self, kind: str) -> np.ndarray:
        """bool ``(T, H, W)``: the visible pixels of every instance of ``kind`` ("target", "occluder",
        "distractor")."""
        ids = [i + 1 for i, k in enumerate(self.kinds) if k == kind]
        return np.isin(self.masks, ids)


def class_names(task: str) -> list[str]:
    """Class names of a task, in label order."""
    if task == "appearance":
        return list(APPEARANCES)
    if task == "motion":
        return list(MOTIONS)
    if task == "both":
        return [f"{a}/{m}" for a in BOTH_APPEARANCES for m in BOTH_MOTIONS]
    if task == "occlusion":
        return list(OCCLUSION_OUTCOMES)
    raise DataError(f"unknown synthetic task {task!r}; choose one of {', '.join(TASKS)}")


def label_factors(task: str, label: int) -> tuple[int | None, int | None]:
    """``(appearance, motion)`` indices that the label fixes (None: random in that task)."""
    n = len(class_names(task))
    if not 0 <= int(label) < n:
        raise DataError(f"label {label} out of range for task {task!r} ({n} classes)")
    if task == "appearance":
        return int(label), None
    if task == "motion":
        return None, int(label)
    if task == "occlusion":
        return None, None
    a, m = divmod(int(label), len(BOTH_MOTIONS))
    return APPEARANCES.index(BOTH_APPEARANCES[a]), MOTIONS.index(BOTH_MOTIONS[m])


# ----------------------------------------------------------------------------------------------
# Photos, textures and shapes (loaded once per process)


def _load_photo(name: str) -> np.ndarray:
    import skimage.data

    from core.data.images import to_rgb_uint8

    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_images

        sample = load_sample_images()
        for fname, img in zip(sample.filenames, sample.images, strict=True):
            if Path(fname).stem == name:
                return to_rgb_uint8(img, name)
    try:
        img = getattr(skimage.data, name)()
    except Exception as e:  # a loader that needs a download
        raise DataError(f"bundled photo {name!r} is not available offline: {e}") from None
    if isinstance(img, tuple):
        img = img[0]
    return to_rgb_uint8(img, name)


@lru_cache(maxsize=1)
def _textures() -> tuple[np.ndarray, ...]:
    """One uint8 ``(h, w, 3)`` texture region per appearance (grey photos tinted)."""
    out = []
    for _, _, tex in _APPEARANCE_SPECS:
        img = _load_photo(tex.photo)
        if tex.region is not None:
            y0, y1, x0, x1 = tex.region
            img = img[y0:y1, x0:x1]
        if tex.tint is not None:
            grey = img[..., :1].astype(np.float32) / 255.0
            # Stretch the grey levels, then map dark -> 30 % of the tint and light -> 125 %.
            lo, hi = np.percentile(grey, (2, 98))
            grey = np.clip((grey - lo) / max(hi - lo, 1e-3), 0, 1)
            img = np.clip(np.asarray(tex.tint, np.float32) * (0.3 + 0.95 * grey), 0, 255).astype(np.uint8)
        out.append(np.ascontiguousarray(img))
    return tuple(out)


@lru_cache(maxsize=1)
def _background_photos() -> tuple[np.ndarray, ...]:
    """Background photos (their regions), desaturated by 35 % (the darkening is drawn per video)."""
    out = []
    for name, region in _BACKGROUNDS:
        img = _load_photo(name)
        if region is not None:
            y0, y1, x0, x1 = region
            img = img[y0:y1, x0:x1]
        f = img.astype(np.float32)
        grey = f.mean(axis=2, keepdims=True)
        out.append(np.ascontiguousarray((0.65 * f + 0.35 * grey).astype(np.uint8)))
    return tuple(out)


@lru_cache(maxsize=8)
def _backgrounds(size: int) -> tuple[np.ndarray, ...]:
    """The background photos shrunk so that the smallest crop (35 % of the shorter side) is
    about ``size`` pixels: crops are then only ever shrunk, and cheap to resize."""
    out = []
    for img in _background_photos():
        short = min(img.shape[:2])
        target = int(np.ceil(size / BACKGROUND_CROP[0]))
        if short > target:
            f = target / short
            img = cv2.resize(img, (round(img.shape[1] * f), round(img.shape[0] * f)), interpolation=cv2.INTER_AREA)
        out.append(img)
    return tuple(out)


@lru_cache(maxsize=1)
def _occluder_texture() -> np.ndarray:
    img = _load_photo(_OCCLUDER_PHOTO).astype(np.float32)
    return np.clip(img * 0.8 + 40, 0, 255).astype(np.uint8)  # light paper, readable print


def _shape_polygons(shape: str) -> list[np.ndarray]:
    """Polygons in unit coordinates (inside the circle of radius 0.94 around 0); the first is
    filled, the rest are holes."""
    r = 0.94
    t = np.linspace(0, 2 * np.pi, 181)[:-1]
    if shape == "square":
        a = np.deg2rad([45, 135, 225, 315])
        return [r * np.stack([np.cos(a), np.sin(a)], 1)]
    if shape == "triangle":
        a = np.deg2rad([-90, 30, 150])
        return [r * np.stack([np.cos(a), np.sin(a)], 1)]
    if shape == "pacman":  # disk with a 70 degree wedge cut out
        a = np.deg2rad(np.linspace(35, 325, 100))
        return [np.vstack([[0.0, 0.0], r * np.stack([np.cos(a), np.sin(a)], 1)])]
    if shape == "star":
        a = np.deg2rad(np.arange(10) * 36 - 90)
        rad = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        return [np.stack([rad * np.cos(a), rad * np.sin(a)], 1)]
    if shape == "cross":
        w, e = 0.3, 0.9 * r
        return [np.array([[-w, -e], [w, -e], [w, -w], [e, -w], [e, w], [w, w], [w, e], [-w, e], [-w, w],
                          [-e, w], [-e, -w], [-w, -w]])]
    if shape == "ring":  # an annulus with a 50 degree gap (a Landolt C)
        a = np.deg2rad(np.linspace(25, 335, 100))
        outer = r * np.stack([np.cos(a), np.sin(a)], 1)
        inner = 0.55 * r * np.stack([np.cos(a[::-1]), np.sin(a[::-1])], 1)
        return [np.vstack([outer, inner])]
    if shape == "heart":
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        pts = np.stack([x, y + 2.5], 1)
        return [r * pts / np.abs(pts).max() / 1.08]
    if shape == "crescent":
        outer = r * np.stack([np.cos(t), np.sin(t)], 1)
        inner = 0.78 * r * np.stack([np.cos(t), np.sin(t)], 1) + [0.42 * r, 0.0]
        return [outer, inner]
    raise DataError(f"unknown shape {shape!r}")


@lru_cache(maxsize=512)
def _shape_alpha(shape: str, side: int) -> np.ndarray:
    """uint8 ``(side, side)`` coverage of the shape (255 inside), drawn 8x supersampled."""
    big = side * 8
    canvas = np.zeros((big, big), np.uint8)
    polys = _shape_polygons(shape)
    scale = big / 2.0
    pts = [np.round((p * scale + scale) * 16).astype(np.int32) for p in polys]  # 4 fractional bits
    cv2.fillPoly(canvas, pts[:1], 255, lineType=cv2.LINE_8, shift=4)
    if len(pts) > 1:
        cv2.fillPoly(canvas, pts[1:], 0, lineType=cv2.LINE_8, shift=4)
    alpha = cv2.resize(canvas, (side, side), interpolation=cv2.INTER_AREA)
    alpha.setflags(write=False)
    return alpha


# ----------------------------------------------------------------------------------------------
# Trajectories


@dataclass
class _Object:
    """One object's per-frame state: centre ``(T, 2)``, angle ``(T,)`` degrees (clockwise on
    screen), diameter ``(T,)`` pixels, visible ``(T,)``; plus its texture cut and shape."""

    center: np.ndarray
    angle: np.ndarray
    diameter: np.ndarray
    visible: np.ndarray
    patch: np.ndarray
    shape: str

    def reversed(self) -> _Object:
        return _Object(self.center[::-1].copy(), self.angle[::-1].copy(), self.diameter[::-1].copy(),
                       self.visible[::-1].copy(), self.patch, self.shape)


def _trajectory(rng: np.random.Generator, kind: str, T: int, S: int,
                size_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Forward trajectory of one object: centre ``(T, 2)``, angle ``(T,)``, diameter ``(T,)``,
    visible ``(T,)``. Objects stay inside the frame (their circumscribed circle does)."""
    u = np.linspace(0.0, 1.0, T)
    angle0 = rng.uniform(0.0, 360.0)
    jitter = rng.normal(0.0, 0.3, size=(T, 2))
    visible = np.ones(T, bool)
    if kind == "scale":
        d0 = rng.uniform(0.13, 0.19) * S * size_scale
        d1 = min(d0 * rng.uniform(1.7, 2.3), 0.42 * S * size_scale)
        diameter = d0 * (d1 / d0) ** u
    else:
        diameter = np.full(T, rng.uniform(*OBJECT_SIZE) * S * size_scale)
    half = diameter.max() / 2.0
    lo, hi = half + 0.5, S - half - 0.5
    angle = np.full(T, angle0)
    if kind in ("translate_x", "translate_y"):
        span = min(rng.uniform(0.40, 0.65) * S, hi - lo)
        a0 = rng.uniform(lo, hi - span)
        b0 = rng.uniform(lo, hi)
        b1 = np.clip(b0 + rng.uniform(-0.08, 0.08) * S, lo, hi)
        along, across = a0 + span * u, b0 + (b1 - b0) * u
        center = np.stack([along, across] if kind == "translate_x" else [across, along], 1) + jitter
    elif kind == "rotate":
        c = rng.uniform(lo, hi, size=2)
        total = min(rng.uniform(90.0, 180.0), 20.0 * (T - 1))  # under 20 degrees a frame
        angle = angle0 + total * u + rng.normal(0.0, 1.0, size=T)
        center = c + jitter
    elif kind == "scale":
        c0 = rng.uniform(lo, hi, size=2)
        c1 = np.clip(c0 + rng.uniform(-0.05, 0.05, size=2) * S, lo, hi)
        center = c0 + (c1 - c0) * u[:, None] + jitter
    elif kind == "flash":
        center = np.tile(rng.uniform(lo, hi, size=2), (T, 1))
        on, off = int(rng.integers(2, 5)), int(rng.integers(2, 5))
        phase = int(rng.integers(0, on + off))
        visible = ((np.arange(T) + phase) % (on + off)) < on
        if visible.all():
            visible[int(rng.integers(0, T))] = False
        if not visible.any():
            visible[int(rng.integers(0, T))] = True
    else:
        raise DataError(f"unknown trajectory kind {kind!r}")
    center = np.clip(center, lo, hi)
    return center, angle, diameter, visible


def _texture_patch(rng: np.random.Generator, appearance: int) -> np.ndarray:
    """A random square cut (random side in the texture's range, random flip) of the texture."""
    tex = _textures()[appearance]
    spec = _APPEARANCE_SPECS[appearance][2]
    h, w = tex.shape[:2]
    side = int(min(rng.integers(spec.side[0], spec.side[1] + 1), h, w))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    patch = tex[y:y + side, x:x + side]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return np.ascontiguousarray(patch)


def _background(rng: np.random.Generator, S: int) -> np.ndarray:
    """A random crop (scale, position, flip) of a random background photo, darkened."""
    pool = _backgrounds(S)
    img = pool[int(rng.integers(0, len(pool)))]
    h, w = img.shape[:2]
    side = int(rng.uniform(*BACKGROUND_CROP) * min(h, w))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    bg = cv2.resize(img[y:y + side, x:x + side], (S, S), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        bg = np.ascontiguousarray(bg[:, ::-1])
    gain = rng.uniform(0.5, 0.7)
    return cv2.convertScaleAbs(bg, alpha=gain, beta=0.0)


def _occluder(rng: np.random.Generator, S: int) -> tuple[np.ndarray, tuple[slice, slice]]:
    """A static paper strip across the frame: RGB ``(S, S, 3)`` (valid inside the strip) and the
    strip's ``(rows, columns)`` slices."""
    width = max(3, round(rng.uniform(0.10, 0.16) * S))
    pos = round(rng.uniform(0.3, 0.7) * S - width / 2)
    vertical = rng.random() < 0.5
    return _strip(rng, S, width, pos, vertical)


def _strip(rng: np.random.Generator, S: int, width: int, pos: int,
           vertical: bool) -> tuple[np.ndarray, tuple[slice, slice]]:
    """The paper strip of :func:`_occluder` with columns (``vertical``) or rows ``pos .. pos+width-1``."""
    tex = _occluder_texture()
    h, w = tex.shape[:2]
    side = min(h, w)
    cut = tex[:side, int(rng.integers(0, w - side + 1)):][:, :side]
    strip = cv2.resize(np.ascontiguousarray(cut), (S, S), interpolation=cv2.INTER_AREA)
    box = (slice(None), slice(pos, pos + width)) if vertical else (slice(pos, pos + width), slice(None))
    # A dark rim along its long edges so that the strip reads as an object in front.
    strip = strip.copy()
    edges = (pos, pos + width - 1)
    for e in edges:
        if vertical:
            strip[:, e] //= 3
        else:
            strip[e, :] //= 3
    return strip, box


OCCLUSION_TARGET_SIZE = (0.16, 0.22)  # target diameter in the occlusion task (fraction of the side)
OCCLUSION_MARGIN = 0.05  # the strip is this much (fraction of the side) wider than the target
OCCLUSION_PHASES = (0.4, 0.6)  # fractions of the clip: the target is behind the strip in between


def _occlusion_scene(rng: np.random.Generator, outcome: str, T: int, S: int, patch: np.ndarray,
                     shape: str) -> tuple[_Object, tuple[np.ndarray, tuple[slice, slice]]]:
    """The occlusion task's target and strip. The target moves at constant speed from one side to
    the strip's centre line (arriving at ``OCCLUSION_PHASES[0]``), waits there fully hidden until
    ``OCCLUSION_PHASES[1]``, then goes on to the far side (``passes``), back to where it started
    (``returns``) or stays (``hidden``). All random draws come before the outcome is used."""
    d = rng.uniform(*OCCLUSION_TARGET_SIZE) * S
    width = int(np.ceil(d + OCCLUSION_MARGIN * S))
    centre = rng.uniform(0.45, 0.55) * S
    pos = round(centre - width / 2)
    centre = pos + (width - 1) / 2.0  # the strip's pixel centre, so the hidden target is fully covered
    vertical = rng.random() < 0.5
    side = 1.0 if rng.random() < 0.5 else -1.0  # +1: enters from the low-coordinate side
    half = d / 2.0
    reach = min(centre - half - 0.5, S - half - 0.5 - centre)
    dist = rng.uniform(0.75, 1.0) * reach
    across = rng.uniform(half + 0.5, S - half - 0.5)
    angle0 = rng.uniform(0.0, 360.0)
    spin = rng.uniform(-4.0, 4.0)  # degrees a frame: a little life, the same in every outcome
    strip = _strip(rng, S, width, pos, vertical)
    u = np.linspace(0.0, 1.0, T)
    a, b = OCCLUSION_PHASES
    start = centre - side * dist
    along = np.where(u <= a, start + (centre - start) * u / a, centre)
    after = np.clip((u - b) / (1.0 - b), 0.0, 1.0)
    if outcome == "passes":
        along = np.where(u >= b, centre + side * dist * after, along)
    elif outcome == "returns":
        along = np.where(u >= b, centre - side * dist * after, along)
    elif outcome != "hidden":
        raise DataError(f"unknown occlusion outcome {outcome!r}")
    center = np.stack([along, np.full(T, across)] if vertical else [np.full(T, across), along], 1)
    obj = _Object(center, angle0 + spin * np.arange(T), np.full(T, d), np.ones(T, bool), patch, shape)
    return obj, strip


# ----------------------------------------------------------------------------------------------
# Rendering


def _render(objects: list[_Object], background: np.ndarray, T: int,
            occluder: tuple[np.ndarray, tuple[slice, slice]] | None) -> tuple[np.ndarray, np.ndarray]:
    """Frames uint8 ``(T, S, S, 3)`` and visible instance ids uint8 ``(T, S, S)``.

    Object ``k`` (0-based) gets id ``k + 1``; they are drawn from the last to the first, so the
    target (id 1) is in front of the distractors; the occluder comes last, with the next id.
    """
    S = background.shape[0]
    frames = np.empty((T, S, S, 3), np.uint8)
    frames[:] = background
    ids = np.zeros((T, S, S), np.uint8)
    for k in range(len(objects) - 1, -1, -1):
        obj = objects[k]
        sprites: dict[int, np.ndarray] = {}
        # Shrink the texture cut once to the largest size drawn; each frame's sprite comes from it.
        big = max(4, round(float(obj.diameter.max())))
        patch = obj.patch
        if patch.shape[0] > big:
            patch = cv2.resize(patch, (big, big), interpolation=cv2.INTER_AREA)
        for t in range(T):
            if not obj.visible[t]:
                continue
            d = float(obj.diameter[t])
            side = max(4, round(d))
            rgba = sprites.get(side)
            if rgba is None:
                rgb = patch if patch.shape[0] == side else cv2.resize(patch, (side, side),
                                                                     interpolation=cv2.INTER_AREA)
                rgba = np.dstack([rgb, _shape_alpha(obj.shape, side)])
                sprites[side] = rgba
            # Sprite pixel p maps to centre + k R (p - mid); R rotates clockwise on screen (y down).
            theta = np.deg2rad(obj.angle[t])
            k_s = d / side
            c, s = k_s * np.cos(theta), k_s * np.sin(theta)
            mid = (side - 1) / 2.0
            cx, cy = obj.center[t]
            # Warp into the object's bounding box only (its circumscribed circle, clipped).
            r = d / 2.0 + 2.0
            x0, y0 = max(0, int(np.floor(cx - r))), max(0, int(np.floor(cy - r)))
            x1, y1 = min(S, int(np.ceil(cx + r)) + 1), min(S, int(np.ceil(cy + r)) + 1)
            if x1 <= x0 or y1 <= y0:
                continue
            M = np.array([[c, -s, cx - x0 - (c * mid - s * mid)], [s, c, cy - y0 - (s * mid + c * mid)]])
            warped = cv2.warpAffine(rgba, M, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT)
            m = warped[:, :, 3] >= 128
            np.copyto(frames[t, y0:y1, x0:x1], warped[:, :, :3], where=m[:, :, None])
            ids[t, y0:y1, x0:x1][m] = k + 1
    if occluder is not None:
        rgb, (rows, cols) = occluder
        frames[:, rows, cols] = rgb[rows, cols]
        ids[:, rows, cols] = len(objects) + 1
    return frames, ids


def _tracks_and_boxes(ids: np.ndarray, n_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """Centroids ``(n, T, 2)`` and boxes ``(n, T, 4)`` of each visible instance (NaN: none)."""
    T, H, W = ids.shape
    tracks = np.full((n_objects, T, 2), np.nan, np.float32)
    boxes = np.full((n_objects, T, 4), np.nan, np.float32)
    xs, ys = np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64)
    for k in range(n_objects):
        m = (ids == k + 1).view(np.uint8)
        cols = m.sum(axis=1, dtype=np.uint16)  # (T, W) pixels per column (H <= 1024)
        rows = m.sum(axis=2, dtype=np.uint16)  # (T, H) pixels per row
        count = rows.sum(axis=1, dtype=np.int64)
        vis = count > 0
        if not vis.any():
            continue
        tracks[k, vis, 0] = (cols[vis] @ xs) / count[vis]
        tracks[k, vis, 1] = (rows[vis] @ ys) / count[vis]
        r, c = rows[vis] > 0, cols[vis] > 0
        boxes[k, vis] = np.stack([c.argmax(axis=1), r.argmax(axis=1), W - c[:, ::-1].argmax(axis=1),
                                  H - r[:, ::-1].argmax(axis=1)], 1)
    return tracks, boxes


def make_video(config: SyntheticConfig, index: int, *, label: int | None = None) -> SyntheticVideo:
    """Render video ``index`` of ``config``: a deterministic function of ``(config, index)``.

    The class is ``index % n_classes`` unless ``label`` overrides it; the override changes
    nothing else (same background, identities, trajectories), which is how exact time reversal
    is checked: for a pair ``(a, b)`` of opposite motions,
    ``make_video(c, i, label=b).frames == make_video(c, i, label=a).frames[::-1]``.
    """
    index = int(index)
    if index < 0:
        raise DataError(f"video index must be non-negative, got {index}")
    T, S = config.frames, config.size
    label = index % config.n_classes if label is None else int(label)
    fixed_app, fixed_motion = label_factors(config.task, label)

    root = np.random.default_rng([config.seed, index])
    scene_rng, target_rng, distractor_rng, occluder_rng = root.spawn(4)
    # Draw the random factors whatever the task, so that the streams never depend on the label.
    if config.task == "both":
        rand_app = APPEARANCES.index(BOTH_APPEARANCES[int(scene_rng.integers(len(BOTH_APPEARANCES)))])
        rand_motion = MOTIONS.index(BOTH_MOTIONS[int(scene_rng.integers(len(BOTH_MOTIONS)))])
    else:
        rand_app = int(scene_rng.integers(len(APPEARANCES)))
        rand_motion = int(scene_rng.integers(len(MOTIONS)))
    appearance = rand_app if fixed_app is None else fixed_app
    motion = rand_motion if fixed_motion is None else fixed_motion
    background = _background(scene_rng, S)

    kind, backwards = _MOTION_KIND[MOTIONS[motion]]
    strip = None
    if config.task == "occlusion":
        motion, backwards = -1, False
        target, strip = _occlusion_scene(target_rng, OCCLUSION_OUTCOMES[label], T, S,
                                         _texture_patch(target_rng, appearance), SHAPES[appearance])
        objects = [target]
    else:
        center, angle, diameter, visible = _trajectory(target_rng, kind, T, S)
        objects = [_Object(center, angle, diameter, visible, _texture_patch(target_rng, appearance),
                           SHAPES[appearance])]

    if config.distractors:
        others = [a for a in range(len(APPEARANCES)) if a != appearance]
        chosen = distractor_rng.choice(others, size=config.distractors, replace=False)
        for a in chosen:
            m = MOTIONS[int(distractor_rng.integers(len(MOTIONS)))]
            d_kind, d_back = _MOTION_KIND[m]
            traj = _trajectory(distractor_rng, d_kind, T, S, size_scale=distractor_rng.uniform(*DISTRACTOR_SCALE))
            obj = _Object(*traj, _texture_patch(distractor_rng, int(a)), SHAPES[int(a)])
            objects.append(obj.reversed() if d_back else obj)
    occ = strip if strip is not None else (_occluder(occluder_rng, S) if config.occluder else None)

    if backwards:  # the whole clip runs backwards: the exact time reversal of the forward member
        objects = [o.reversed() for o in objects]
    frames, ids = _render(objects, background, T, occ)
    if config.blur > 0:
        sigma = float(config.blur)
        for t in range(T):
            frames[t] = cv2.GaussianBlur(frames[t], (0, 0), sigma)
        background = cv2.GaussianBlur(background, (0, 0), sigma)
    tracks, boxes = _tracks_and_boxes(ids, config.n_objects)
    kinds = ("target",) + ("distractor",) * config.distractors + (("occluder",) if config.has_occluder else ())
    amodal = None
    if config.task == "occlusion":  # the target alone over an empty frame: its whole silhouette
        amodal = _render(objects[:1], np.zeros_like(background), T, None)[1] == 1
    return SyntheticVideo(frames=frames, masks=ids, tracks=tracks, boxes=boxes, background=background,
                          label=label, appearance=appearance, motion=motion, seed=config.seed, index=index,
                          kinds=kinds, amodal=amodal)


# ----------------------------------------------------------------------------------------------
# Splits, caching, torch Dataset


def _split_offset(split: str) -> int:
    if split not in SPLIT_OFFSETS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_OFFSETS)}")
    return SPLIT_OFFSETS[split]


def make_split(config: SyntheticConfig, n: int, split: str = "train") -> dict[str, np.ndarray]:
    """``n`` videos of a split, balanced over classes (label = index % n_classes).

    Returns ``frames`` uint8 ``(N, T, H, W, 3)``, ``masks`` uint8 ``(N, T, H, W)``, ``labels``,
    ``appearance``, ``motion``, ``index`` int64 ``(N,)``, ``tracks`` float32
    ``(N, n_objects, T, 2)`` and ``boxes`` float32 ``(N, n_objects, T, 4)``; occlusion task also
    ``amodal`` bool ``(N, T, H, W)``.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise DataError(f"number of videos must be a non-negative integer, got {n!r}")
    offset = _split_offset(split)
    T, S, k = config.frames, config.size, config.n_objects
    out = {
        "frames": np.empty((n, T, S, S, 3), np.uint8),
        "masks": np.empty((n, T, S, S), np.uint8),
        "labels": np.empty(n, np.int64),
        "appearance": np.empty(n, np.int64),
        "motion": np.empty(n, np.int64),
        "index": np.empty(n, np.int64),
        "tracks": np.empty((n, k, T, 2), np.float32),
        "boxes": np.empty((n, k, T, 4), np.float32),
    }
    if config.task == "occlusion":
        out["amodal"] = np.empty((n, T, S, S), bool)
    for i in range(n):
        v = make_video(config, offset + i)
        if v.amodal is not None:
            out["amodal"][i] = v.amodal
        out["frames"][i], out["masks"][i] = v.frames, v.masks
        out["labels"][i], out["appearance"][i], out["motion"][i] = v.label, v.appearance, v.motion
        out["index"][i], out["tracks"][i], out["boxes"][i] = v.index, v.tracks, v.boxes
    return out


def _cache_meta(config: SyntheticConfig, n: int, split: str) -> str:
    return json.dumps({"generator": "core.data.synthetic", "version": GENERATOR_VERSION, "config": asdict(config),
                       "n": int(n), "split": split}, sort_keys=True,
                      default=lambda o: o.item() if isinstance(o, np.generic) else str(o))


def cache_path(config: SyntheticConfig, n: int, split: str, cache_dir: str | Path) -> Path:
    """Where :func:`cached_split` keeps a split: named by a hash of the config, ``n``, the split
    and :data:`GENERATOR_VERSION`."""
    _split_offset(split)
    digest = hashlib.sha256(_cache_meta(config, n, split).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"synthetic-{config.task}-{split}-{int(n)}-{digest}.npz"


def cached_split(config: SyntheticConfig, n: int, split: str, cache_dir: str | Path) -> dict[str, np.ndarray]:
    """:func:`make_split`, stored in ``cache_dir`` as an ``.npz`` (no pickled objects) on the
    first call and loaded from there afterwards. A file that cannot be read or does not match
    is regenerated (with a warning). Written atomically (temporary file + ``os.replace``)."""
    path = cache_path(config, n, split, cache_dir)
    meta = _cache_meta(config, n, split)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["meta"]) != meta:
                    raise ValueError("it was made for other settings")
                return {k: z[k] for k in z.files if k != "meta"}
        except Exception as e:
            warnings.warn(f"regenerating the synthetic cache {path}: {e}", stacklevel=2)
    data = make_split(config, n, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, meta=np.array(meta), **data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return data


class SyntheticVideoDataset(torch.utils.data.Dataset):
    """``n`` videos of a split, rendered on the fly: item ``i`` is ``(frames, label)`` with
    ``frames`` uint8 ``(T, H, W, 3)``, the same as ``make_split(config, n, split)["frames"][i]``.
    ``transform`` (optional) is applied to the frames."""

    def __init__(self, config: SyntheticConfig, n: int, split: str = "train",
                 transform: Callable[[np.ndarray], object] | None = None) -> None:
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise DataError(f"number of videos must be a non-negative integer, got {n!r}")
        self.config, self.n, self.split = config, int(n), split
        self.offset = _split_offset(split)
        self.transform = transform
        self.classes = class_names(config.task)

    def __len__(self) -> int:
        return self.n

    def video(self, i: int) -> SyntheticVideo:
        """The full :class:`SyntheticVideo` (masks, tracks) of item ``i``."""
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} videos")
        return make_video(self.config, self.offset + (i % self.n))

    def __getitem__(self, i: int) -> tuple[object, int]:
        v = self.video(int(i))
        frames = v.frames if self.transform is None else self.transform(v.frames)
        return frames, v.label


# ----------------------------------------------------------------------------------------------
# Contact sheet


_ID_COLOURS = ((255, 255, 0), (0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 128, 0), (128, 128, 255),
               (255, 255, 255), (255, 0, 0), (0, 0, 255))


def contact_sheet(config: SyntheticConfig, per_class: int = 2, frames_shown: int = 4, zoom: int = 2,
                  outlines: bool = True, label_width: int = 190) -> np.ndarray:
    """An RGB uint8 image: one row per class, ``per_class`` videos of ``frames_shown`` evenly
    spaced frames each, enlarged ``zoom`` times (nearest neighbour), with the instance masks
    outlined (target yellow, then cyan, magenta, ... by instance id)."""
    names = class_names(config.task)
    T = config.frames
    S = config.size * zoom
    picks = np.linspace(0, T - 1, frames_shown).round().astype(int)
    gap = 8
    row_w = label_width + per_class * (frames_shown * S + gap)
    rows = []
    for c, name in enumerate(names):
        row = np.full((S + 4, row_w, 3), 24, np.uint8)
        for j, part in enumerate(name.split("/")):
            cv2.putText(row, part, (6, 24 + 22 * j), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (235, 235, 235), 1,
                        cv2.LINE_AA)
        for v in range(per_class):
            video = make_video(config, c + v * len(names))
            for j, t in enumerate(picks):
                tile = cv2.resize(video.frames[t], (S, S), interpolation=cv2.INTER_NEAREST)
                if outlines:
                    big = cv2.resize(video.masks[t], (S, S), interpolation=cv2.INTER_NEAREST)
                    for k in range(config.n_objects):
                        m = (big == k + 1).astype(np.uint8)
                        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                        cv2.drawContours(tile, contours, -1, _ID_COLOURS[k % len(_ID_COLOURS)], 1)
                cv2.putText(tile, f"t={t}", (4, S - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                            cv2.LINE_AA)
                x = label_width + v * (frames_shown * S + gap) + j * S
                row[2:2 + S, x:x + S] = tile
        rows.append(row)
    return np.vstack(rows)
