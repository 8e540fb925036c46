"""The occlusion-tracking task of the synthetic benchmark: balanced labels, masks that agree with the
frames (the target's mask is empty while it is fully behind the strip), an amodal target mask, the
outcome decided only after the occlusion, determinism; and the other tasks' videos unchanged."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from core.data.synthetic import (
    OCCLUSION_OUTCOMES,
    OCCLUSION_PHASES,
    SyntheticConfig,
    class_names,
    make_split,
    make_video,
)

CONFIG = SyntheticConfig("occlusion", frames=16, size=64)


def test_classes_and_balanced_labels():
    assert class_names("occlusion") == list(OCCLUSION_OUTCOMES) == ["passes", "returns", "hidden"]
    split = make_split(CONFIG, 12, "val")
    assert np.bincount(split["labels"], minlength=3).tolist() == [4, 4, 4]
    assert split["amodal"].shape == (12, 16, 64, 64) and split["masks"].shape == (12, 16, 64, 64)
    assert (split["motion"] == -1).all()


@pytest.mark.parametrize("index", range(9))
def test_masks_match_the_frames_and_the_target_hides(index):
    v = make_video(CONFIG, index)
    assert v.kinds == ("target", "occluder")
    target, occluder = v.instance_mask("target"), v.instance_mask("occluder")
    assert not (target & occluder).any()
    # the strip is static and in front: its mask is the same every frame, and the target's visible
    # mask is its amodal mask minus the strip
    assert (occluder == occluder[0]).all() and occluder[0].any()
    assert np.array_equal(target, v.amodal & ~occluder)
    # background exactly where no mask is (no blur)
    outside = ~(target | occluder)
    assert np.array_equal(v.frames[outside], np.broadcast_to(v.background, v.frames.shape)[outside])
    # the target is whole in the first frame, fully hidden (empty mask, NaN track) between the phases
    t = np.linspace(0, 1, 16)
    behind = (t > OCCLUSION_PHASES[0]) & (t < OCCLUSION_PHASES[1])
    assert target[0].sum() == v.amodal[0].sum() > 0
    assert v.amodal[behind].any(axis=(1, 2)).all()
    assert not target[behind].any() and np.isnan(v.tracks[0, behind]).all()
    visible_at_end = target[-1].any()
    assert visible_at_end == (class_names("occlusion")[v.label] != "hidden")


def _along(v) -> np.ndarray:
    """The target's amodal centre along its motion axis, per frame."""
    ys, xs = np.nonzero(v.amodal[0])
    ys1, xs1 = np.nonzero(v.amodal[8])  # behind the strip
    axis = 1 if abs(xs.mean() - xs1.mean()) > abs(ys.mean() - ys1.mean()) else 0
    return np.array([np.nonzero(m)[axis].mean() for m in v.amodal])


def test_outcome_decided_after_the_occlusion_only():
    t = np.linspace(0, 1, 16)
    before = t <= OCCLUSION_PHASES[1]
    for i in range(3):
        videos = [make_video(CONFIG, 3 * i, label=k) for k in range(3)]
        for v in videos[1:]:  # same clip up to the end of the hidden stretch
            assert np.array_equal(v.frames[before], videos[0].frames[before])
        passes, returns, hidden = (_along(v) for v in videos)
        start, mid = passes[0], passes[8]
        assert np.sign(passes[-1] - mid) == np.sign(mid - start)  # goes on to the far side
        assert abs(returns[-1] - start) < 0.25 * abs(mid - start)  # back near where it came from
        assert abs(hidden[-1] - mid) < 1.0


def test_last_frame_alone_does_not_give_passes_from_returns():
    """Which side the target comes from is random, so where it ends up is not the label."""
    ends = {0: [], 1: []}
    for i in range(60):
        v = make_video(CONFIG, i)
        if v.label < 2:
            along = _along(v)
            ends[v.label].append(along[-1] > 32)
    for label in (0, 1):
        assert 0.2 < np.mean(ends[label]) < 0.8


def test_deterministic_by_seed():
    a, b = make_video(CONFIG, 7), make_video(CONFIG, 7)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.masks, b.masks)
    assert np.array_equal(a.amodal, b.amodal)
    other = make_video(SyntheticConfig("occlusion", frames=16, size=64, seed=1), 7)
    assert not np.array_equal(a.frames, other.frames)


def test_with_distractors_ids_and_kinds():
    v = make_video(SyntheticConfig("occlusion", frames=16, size=64, distractors=2), 4)
    assert v.kinds == ("target", "distractor", "distractor", "occluder")
    assert v.tracks.shape == (4, 16, 2) and set(np.unique(v.masks)) <= {0, 1, 2, 3, 4}
    assert np.array_equal(v.instance_mask("occluder"), v.masks == 4)


def test_other_tasks_render_as_before():
    """Frames and masks of the other tasks, with and without the old occluder, distractors and blur,
    are byte for byte those of the generator before the occlusion task was added."""
    h = hashlib.sha256()
    for task in ("appearance", "motion", "both"):
        for kw in ({}, {"occluder": True, "distractors": 2}, {"blur": 1.0, "size": 64}):
            for i in (0, 5, 13):
                v = make_video(SyntheticConfig(task=task, **kw), i)
                h.update(v.frames.tobytes())
                h.update(v.masks.tobytes())
    assert h.hexdigest() == "dda98830490a6b8fedfc8d77038e21eafdd5f728ec4e35c87f64ce03e61c769a"
