"""Static and dynamic pairs (methods.md section 1, Pairs).

A pair is two inputs that share one factor and differ in the other:

- static pair: the same frames in another order, ``style_s(v)`` and ``shuffle_pi(style_s(v))``;
- dynamic pair: the same motion under two styles, ``style_a(v)`` and ``style_b(v)``, ``a != b``.

RGB + optical-flow models get the two-stream variant: the static pair keeps the RGB clip and
recolours the flow (hue and saturation jitter), the dynamic pair keeps the flow and restyles the RGB.
A :class:`PairPlan` holds every random choice, drawn once from a seed, so several models (or
checkpoints) are scored on exactly the same pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from core.data.flow import jitter_flow_rgb


@dataclass(frozen=True)
class PairPlan:
    """The random choices of one pair of one factor, for clip ``clip`` of the data set."""

    factor: str  # "static" or "dynamic"
    clip: int
    style_a: str
    style_b: str | None = None  # dynamic pairs: the second style
    perm: tuple[int, ...] | None = None  # static pairs (one-stream): the frame order of video 2
    hue_shift: float | None = None  # static pairs (two-stream): flow recolouring of video 2
    saturation_scale: float | None = None

    def record(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if v is not None}


def shuffle_permutation(frames: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random permutation of ``range(frames)`` that is not the identity."""
    if frames < 2:
        raise ValueError("shuffling needs at least 2 frames")
    while True:
        perm = rng.permutation(frames)
        if np.any(perm != np.arange(frames)):
            return perm


def plan_pairs(n_clips: int, n_pairs: int, frames: int, styles: Sequence[str], seed: int = 0,
               two_stream: bool = False) -> list[PairPlan]:
    """``n_pairs`` static then ``n_pairs`` dynamic pair plans over ``n_clips`` clips.

    Clips are used in turn (pair ``j`` of each factor uses clip ``j mod n_clips``), so with fewer
    clips than pairs each clip appears in several pairs, under other styles and orders.
    """
    if n_clips < 1 or n_pairs < 2:
        raise ValueError(f"need at least 1 clip and 2 pairs, got {n_clips} clips and {n_pairs} pairs")
    if len(styles) < 2:
        raise ValueError(f"dynamic pairs need at least 2 styles, got {list(styles)}")
    rng = np.random.default_rng([seed, 3])
    plans = []
    for j in range(n_pairs):
        style = str(styles[rng.integers(len(styles))])
        if two_stream:
            plans.append(PairPlan("static", j % n_clips, style, hue_shift=float(rng.uniform(60, 300)),
                                  saturation_scale=float(rng.uniform(0.4, 0.8))))
        else:
            perm = tuple(int(i) for i in shuffle_permutation(frames, rng))
            plans.append(PairPlan("static", j % n_clips, style, perm=perm))
    for j in range(n_pairs):
        a, b = rng.choice(len(styles), size=2, replace=False)
        plans.append(PairPlan("dynamic", j % n_clips, str(styles[a]), style_b=str(styles[b])))
    return plans


Clip = np.ndarray  # (T, H, W, 3) uint8
Input = Clip | tuple[Clip, Clip]  # one-stream clip, or (rgb, flow_rgb)


def build_pair(plan: PairPlan, styled: Callable[[int, str], Clip],
               flow: Callable[[int], Clip] | None = None) -> tuple[Input, Input]:
    """The two inputs of a pair. ``styled(clip, style)`` returns a restyled clip; for two-stream
    models ``flow(clip)`` returns the clip's flow drawn as RGB ``(T, H, W, 3)``."""
    if plan.factor == "static":
        v = styled(plan.clip, plan.style_a)
        if flow is None:
            assert plan.perm is not None
            return v, v[np.asarray(plan.perm)]
        f = flow(plan.clip)
        return (v, f), (v, jitter_flow_rgb(f, plan.hue_shift or 0.0, plan.saturation_scale or 1.0))
    assert plan.style_b is not None
    va, vb = styled(plan.clip, plan.style_a), styled(plan.clip, plan.style_b)
    if flow is None:
        return va, vb
    f = flow(plan.clip)
    return (va, f), (vb, f)
