"""Optical flow and its RGB rendering: known motions give known flows and colours."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.data.flow import flow_to_rgb, jitter_flow_rgb, optical_flow
from core.data.synthetic import MOTIONS, SyntheticConfig, make_video
from core.errors import DataError


def _translating_square(step: int, T: int = 6, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A textured 20 px square moving ``step`` px a frame along x over a textured static
    background: frames ``(T, H, W, 3)`` and the square's interior ``(T, H, W)``."""
    rng = np.random.default_rng(0)
    bg = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (0, 0), 1.5)
    tex = cv2.GaussianBlur(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8), (0, 0), 1.0)
    frames = np.empty((T, size, size, 3), np.uint8)
    inside = np.zeros((T, size, size), bool)
    x_start = 10 if step > 0 else size - 30
    for t in range(T):
        x = x_start + step * t
        frames[t] = bg
        frames[t, 22:42, x:x + 20] = tex
        inside[t, 24:40, x + 2:x + 18] = True
    return frames, inside


def test_translating_square_has_the_right_flow():
    frames, inside = _translating_square(2)
    flow = optical_flow(frames)
    assert flow.shape == (2, 6, 64, 64) and flow.dtype == np.float32
    for t in range(5):
        dx, dy = flow[0, t][inside[t]].mean(), flow[1, t][inside[t]].mean()
        assert abs(dx - 2.0) < 0.4 and abs(dy) < 0.3, (t, dx, dy)
    far = ~cv2.dilate(inside[0].astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    assert np.abs(flow[:, 0][:, far]).mean() < 0.2  # the static background does not move
    assert np.array_equal(flow[:, -1], flow[:, -2])  # the last flow repeats the one before
    assert not optical_flow(frames[:1]).any()  # one frame: no motion
    left = optical_flow(_translating_square(-2)[0])
    assert left[0, 0][_translating_square(-2)[1][0]].mean() < -1.6


def test_flow_of_a_synthetic_video_points_the_right_way():
    c = SyntheticConfig("motion")
    for name, axis, sign in (("left_to_right", 0, 1), ("right_to_left", 0, -1), ("down", 1, 1), ("up", 1, -1)):
        v = make_video(c, 0, label=MOTIONS.index(name))
        flow = optical_flow(v.frames)
        target = v.masks[:-1] == 1
        assert sign * flow[axis, :-1][target].mean() > 1.0, name


def test_flow_to_rgb_colours_direction_and_magnitude():
    right = np.zeros((2, 2, 8, 8), np.float32)
    right[0] = 2.0
    rgb_right, rgb_left = flow_to_rgb(right), flow_to_rgb(-right)
    assert rgb_right.shape == (2, 8, 8, 3) and rgb_right.dtype == np.uint8
    hue = [cv2.cvtColor(x[0], cv2.COLOR_RGB2HSV)[..., 0].mean() for x in (rgb_right, rgb_left)]
    assert abs(hue[0] - hue[1]) > 60  # opposite directions sit opposite on the colour wheel
    assert (rgb_right[0, 0, 0] == [255, 0, 0]).all()  # rightwards at full speed: pure red
    assert (flow_to_rgb(np.zeros((2, 1, 4, 4))) == 255).all()  # no motion: white
    # Saturation is magnitude over the video's maximum, or over max_magnitude when given.
    half = flow_to_rgb(right, max_magnitude=4.0)
    sat = cv2.cvtColor(half[0], cv2.COLOR_RGB2HSV)[..., 1].mean()
    assert 120 < sat < 135
    with pytest.raises(DataError):
        flow_to_rgb(np.zeros((3, 2, 4, 4)))
    with pytest.raises(DataError):
        flow_to_rgb(right, max_magnitude=0)


def test_jitter_keeps_shape_and_recolours_every_frame_alike():
    frames, _ = _translating_square(2)
    rgb = flow_to_rgb(optical_flow(frames))
    same = jitter_flow_rgb(rgb, 0.0, 1.0)
    assert same.shape == rgb.shape and same.dtype == np.uint8
    assert np.abs(same.astype(int) - rgb).max() <= 3
    flow = np.zeros((2, 3, 8, 8), np.float32)
    flow[0] = 1.0
    turned = jitter_flow_rgb(flow_to_rgb(flow), 180.0, 1.0)
    assert np.abs(turned.astype(int) - flow_to_rgb(-flow)).max() <= 3  # a half turn reverses the direction
    assert (turned == turned[0]).all()  # same change on every frame
    grey = jitter_flow_rgb(rgb, 90.0, 0.0)
    assert (grey == 255).all()  # no saturation left: white, as for no motion
    with pytest.raises(DataError):
        jitter_flow_rgb(rgb.astype(np.float32), 0.0, 1.0)
    with pytest.raises(DataError):
        jitter_flow_rgb(rgb, 0.0, -1.0)
    with pytest.raises(DataError):
        optical_flow(np.zeros((4, 8, 8), np.uint8))
