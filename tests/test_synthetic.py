"""Synthetic benchmark: determinism, ground truth that matches the pixels, labels recoverable
from what they claim to be recoverable from, exact time reversal, splits and the cache."""

from __future__ import annotations

import itertools
import zipfile

import cv2
import numpy as np
import pytest
from scipy.stats import ks_2samp

from core.data import synthetic as syn
from core.data.synthetic import (
    APPEARANCES,
    MOTIONS,
    OPPOSITE,
    SyntheticConfig,
    SyntheticVideoDataset,
    cache_path,
    cached_split,
    class_names,
    make_split,
    make_video,
)
from core.errors import DataError

PAIRS = [("left_to_right", "right_to_left"), ("down", "up"), ("rotate_cw", "rotate_ccw"), ("approach", "recede")]


def _same(a: syn.SyntheticVideo, b: syn.SyntheticVideo) -> bool:
    return (np.array_equal(a.frames, b.frames) and np.array_equal(a.masks, b.masks)
            and np.array_equal(a.tracks, b.tracks, equal_nan=True) and np.array_equal(a.boxes, b.boxes, equal_nan=True)
            and (a.label, a.appearance, a.motion) == (b.label, b.appearance, b.motion))


# ---------------------------------------------------------------------------------------------
# Determinism, configuration, class names


def test_same_seed_same_video_and_other_index_or_seed_differs():
    for task in ("appearance", "motion", "both"):
        c = SyntheticConfig(task, distractors=1, occluder=True)
        a, b = make_video(c, 7), make_video(c, 7)
        assert _same(a, b)
        assert a.frames.tobytes() == b.frames.tobytes()
        assert not np.array_equal(a.frames, make_video(c, 8).frames)
        assert not np.array_equal(a.frames, make_video(SyntheticConfig(task, distractors=1, occluder=True,
                                                                       seed=1), 7).frames)
    v = make_video(SyntheticConfig("motion"), 3)
    assert v.frames.shape == (16, 112, 112, 3) and v.frames.dtype == np.uint8
    assert v.masks.shape == (16, 112, 112) and v.masks.dtype == np.uint8
    assert v.tracks.shape == (1, 16, 2) and v.tracks.dtype == np.float32
    assert v.boxes.shape == (1, 16, 4) and v.background.shape == (112, 112, 3)
    assert (v.seed, v.index, v.kinds) == (0, 3, ("target",))


@pytest.mark.parametrize("kwargs", [
    {"task": "colour"}, {"task": "motion", "frames": 2}, {"task": "motion", "size": 8},
    {"task": "motion", "distractors": -1}, {"task": "motion", "distractors": 8}, {"task": "motion", "blur": -1.0},
    {"task": "motion", "seed": -3}, {"task": "motion", "frames": 16.5}, {"task": "motion", "occluder": "yes"},
    {"task": "motion", "frames": True},
])
def test_bad_config_is_a_data_error(kwargs):
    with pytest.raises(DataError):
        SyntheticConfig(**kwargs)


def test_class_names_and_labels():
    assert class_names("appearance") == list(APPEARANCES) and len(APPEARANCES) == 8
    assert class_names("motion") == list(MOTIONS) and len(MOTIONS) == 9
    both = class_names("both")
    assert len(both) == 16 and len(set(both)) == 16
    assert both[0] == f"{APPEARANCES[0]}/left_to_right" and all("/" in n for n in both)
    with pytest.raises(DataError):
        class_names("nope")
    c = SyntheticConfig("both")
    for i in range(32):
        v = make_video(c, i)
        a, m = both[v.label].split("/")
        assert v.label == i % 16 and APPEARANCES[v.appearance] == a and MOTIONS[v.motion] == m


# ---------------------------------------------------------------------------------------------
# Ground truth matches the pixels


def test_masks_match_the_rendered_objects():
    c = SyntheticConfig("appearance", distractors=2, occluder=True)
    for i in range(12):
        v = make_video(c, i)
        assert v.kinds == ("target", "distractor", "distractor", "occluder")
        outside = v.masks == 0
        # Outside every mask the frame is exactly the background ...
        assert np.array_equal(v.frames[outside], np.broadcast_to(v.background, v.frames.shape)[outside])
        # ... and inside each object's mask it is the object's texture, not the background.
        for k in range(1, 5):
            inside = v.masks == k
            if inside.any():
                changed = (v.frames[inside] != np.broadcast_to(v.background, v.frames.shape)[inside]).any(-1)
                assert changed.mean() > 0.9, (i, k, changed.mean())
        # Tracks and boxes are the visible masks' centroids and extents.
        for k in range(4):
            for t in range(c.frames):
                ys, xs = np.nonzero(v.masks[t] == k + 1)
                if len(xs) == 0:
                    assert np.isnan(v.tracks[k, t]).all() and np.isnan(v.boxes[k, t]).all()
                    continue
                np.testing.assert_allclose(v.tracks[k, t], [xs.mean(), ys.mean()], atol=1e-3)
                np.testing.assert_array_equal(v.boxes[k, t], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        # The occluder is static and drawn in front of everything.
        occ = v.masks == 4
        assert occ.any() and (occ == occ[0]).all()


def test_flash_is_empty_on_off_frames_and_in_place():
    c = SyntheticConfig("motion")
    flash = MOTIONS.index("flash")
    for i in range(flash, flash + 9 * 20, 9):
        v = make_video(c, i)
        area = (v.masks == 1).sum((1, 2))
        off = area == 0
        assert off.any() and (~off).any()
        assert np.isnan(v.tracks[0, off]).all() and not np.isnan(v.tracks[0, ~off]).any()
        assert np.ptp(v.tracks[0, ~off], axis=0).max() < 0.5  # in place
        assert (v.frames[off] == v.background).all()  # nothing drawn when off


def test_distractors_and_occluder_get_their_own_ids():
    plain = make_video(SyntheticConfig("motion"), 0)
    assert set(np.unique(plain.masks)) <= {0, 1} and plain.tracks.shape[0] == 1
    c = SyntheticConfig("motion", distractors=3, occluder=True)
    seen: set[int] = set()
    for i in range(9):
        v = make_video(c, i)
        ids = set(np.unique(v.masks).tolist())
        assert ids <= {0, 1, 2, 3, 4, 5}
        seen |= ids
        assert v.tracks.shape == (5, 16, 2) and v.boxes.shape == (5, 16, 4)
        assert v.kinds[-1] == "occluder"
    assert seen == {0, 1, 2, 3, 4, 5}


def test_blur_keeps_masks_and_smooths_frames():
    sharp = make_video(SyntheticConfig("appearance"), 5)
    blurred = make_video(SyntheticConfig("appearance", blur=1.5), 5)
    assert np.array_equal(sharp.masks, blurred.masks)
    assert not np.array_equal(sharp.frames, blurred.frames)
    lap = [np.abs(cv2.Laplacian(v.frames[0], cv2.CV_32F)).mean() for v in (sharp, blurred)]
    assert lap[1] < 0.6 * lap[0]
    small = make_video(SyntheticConfig("motion", size=64, frames=8), 0)
    assert small.frames.shape == (8, 64, 64, 3)


# ---------------------------------------------------------------------------------------------
# Motion labels from the masks' tracks; exact time reversal


def _rotation(masks: np.ndarray, bins: int = 120) -> float:
    """Summed frame-to-frame rotation (degrees, positive = clockwise on screen) of a mask
    sequence: the shift that best aligns consecutive histograms of pixel angles about the
    centroid."""
    hists = []
    for m in masks:
        ys, xs = np.nonzero(m)
        dy, dx = ys - ys.mean(), xs - xs.mean()
        h, _ = np.histogram(np.arctan2(dy, dx), bins=bins, range=(-np.pi, np.pi), weights=np.hypot(dx, dy))
        hists.append(h)
    shifts = np.arange(-bins // 12, bins // 12 + 1)  # up to 30 degrees a frame
    return float(sum(shifts[np.argmax([np.dot(np.roll(h0, s), h1) for s in shifts])]
                     for h0, h1 in itertools.pairwise(hists)) * 360 / bins)


def _motion_from_masks(masks: np.ndarray, track: np.ndarray, size: int) -> str:
    """A hand-written rule on the target's masks ``(T, H, W)`` bool and centroid track."""
    area = masks.sum((1, 2)).astype(float)
    if (area == 0).any():
        return "flash"
    growth = np.log(area[-1] / area[0])
    if abs(growth) > np.log(1.5):
        return "approach" if growth > 0 else "recede"
    dx, dy = track[-1] - track[0]
    if max(abs(dx), abs(dy)) > 0.15 * size:
        if abs(dx) > abs(dy):
            return "left_to_right" if dx > 0 else "right_to_left"
        return "down" if dy > 0 else "up"
    return "rotate_cw" if _rotation(masks) > 0 else "rotate_ccw"


@pytest.fixture(scope="module")
def motion_videos():
    """1008 motion-task videos (112 a class): the rule's guess and first/last-frame statistics."""
    c = SyntheticConfig("motion")
    rows = []
    for i in range(9 * 112):
        v = make_video(c, i)
        m = v.masks == 1
        area = m.sum((1, 2))
        rows.append({"motion": MOTIONS[v.motion], "guess": _motion_from_masks(m, v.tracks[0], c.size),
                     "first": (*v.tracks[0, 0], area[0]), "last": (*v.tracks[0, -1], area[-1])})
    return rows


def test_motion_label_recoverable_from_the_mask_track(motion_videos):
    groups = [*PAIRS, ("flash",)]
    for group in groups:
        rows = [r for r in motion_videos if r["motion"] in group]
        acc = np.mean([r["guess"] == r["motion"] for r in rows])
        assert len(rows) >= 100 * len(group) and acc >= 0.95, (group, acc)


def test_opposite_classes_share_start_and_end_distributions(motion_videos):
    moving = {"left_to_right": 0, "down": 1, "approach": 2}  # x, y or area
    for a, b in PAIRS:
        first_a = np.array([r["first"] for r in motion_videos if r["motion"] == a])
        last_b = np.array([r["last"] for r in motion_videos if r["motion"] == b])
        first_b = np.array([r["first"] for r in motion_videos if r["motion"] == b])
        for q in range(3):  # x, y, area of the target in the first frame of a / last frame of b
            assert ks_2samp(first_a[:, q], last_b[:, q]).pvalue > 1e-3, (a, b, q)
        if a in moving:  # the test has power: first frames of a and b differ clearly
            assert ks_2samp(first_a[:, moving[a]], first_b[:, moving[a]]).pvalue < 1e-6, (a, b)


@pytest.mark.parametrize("task", ["motion", "both"])
def test_opposite_class_is_the_exact_time_reversal(task):
    c = SyntheticConfig(task, distractors=2, occluder=True)
    names = class_names(task)
    for label, name in enumerate(names):
        motion = name.split("/")[-1]
        if motion not in OPPOSITE:
            continue
        other = names.index(name.replace(motion, OPPOSITE[motion]))
        for index in (label, label + 5 * len(names)):
            fwd = make_video(c, index, label=label)
            bwd = make_video(c, index, label=other)
            assert (MOTIONS[fwd.motion], MOTIONS[bwd.motion]) == (motion, OPPOSITE[motion])
            assert fwd.appearance == bwd.appearance
            assert np.array_equal(bwd.frames, fwd.frames[::-1])
            assert np.array_equal(bwd.masks, fwd.masks[::-1])
            assert np.array_equal(bwd.tracks, fwd.tracks[:, ::-1], equal_nan=True)
            assert np.array_equal(bwd.background, fwd.background)
    # label overrides stay in range
    with pytest.raises(DataError):
        make_video(c, 0, label=len(names))


# ---------------------------------------------------------------------------------------------
# Appearance label from one frame


def _appearance_features(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Colour and texture statistics inside a mask: mean and std of RGB, mean |Laplacian|, mean
    saturation and the saturation-weighted mean hue (as a vector)."""
    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if inner.sum() < 10:
        inner = mask
    rgb = frame[mask].astype(np.float32)
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV_FULL)[mask].astype(np.float32)
    hue, sat = hsv[:, 0] * (2 * np.pi / 256), hsv[:, 1] / 255
    lap = np.abs(cv2.Laplacian(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F))[inner]
    return np.concatenate([rgb.mean(0), rgb.std(0),
                           [lap.mean(), sat.mean(), (sat * np.cos(hue)).mean(), (sat * np.sin(hue)).mean()]])


def _one_frame_dataset(c: SyntheticConfig, indices: range) -> tuple[np.ndarray, np.ndarray]:
    X, y = [], []
    for i in indices:
        v = make_video(c, i)
        visible = np.nonzero((v.masks == 1).any((1, 2)))[0]
        t = int(visible[len(visible) // 2])
        X.append(_appearance_features(v.frames[t], v.masks[t] == 1))
        y.append(v.label)
    return np.array(X), np.array(y)


def test_appearance_label_recoverable_from_a_single_frame():
    c = SyntheticConfig("appearance")
    X_train, y_train = _one_frame_dataset(c, range(100))
    X_test, y_test = _one_frame_dataset(c, range(1000, 1100))
    mu, sd = X_train.mean(0), X_train.std(0) + 1e-6
    centroids = np.stack([((X_train - mu) / sd)[y_train == k].mean(0) for k in range(len(APPEARANCES))])
    guess = np.argmin(((((X_test - mu) / sd)[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    acc = (guess == y_test).mean()
    assert acc > 0.9, acc
    # ... while the motion task's label is not: its appearance is random, independent of the label.
    motion = [make_video(SyntheticConfig("motion"), i) for i in range(90)]
    table = np.zeros((9, 8), int)
    for v in motion:
        table[v.label, v.appearance] += 1
    assert (table > 0).sum() > 50


# ---------------------------------------------------------------------------------------------
# Splits, cache, Dataset


def test_splits_are_balanced_and_disjoint():
    c = SyntheticConfig("motion", size=64, frames=8)
    train, val, test = (make_split(c, 18, s) for s in ("train", "val", "test"))
    for d in (train, val, test):
        assert d["frames"].shape == (18, 8, 64, 64, 3) and d["frames"].dtype == np.uint8
        assert d["masks"].shape == (18, 8, 64, 64)
        assert np.array_equal(d["labels"], np.arange(18) % 9) and np.array_equal(d["motion"], d["labels"])
        assert d["tracks"].shape == (18, 1, 8, 2)
    assert not set(train["index"]) & set(val["index"]) and not set(val["index"]) & set(test["index"])
    for a, b in ((train, val), (val, test), (train, test)):
        assert not any(np.array_equal(x, y) for x in a["frames"] for y in b["frames"])
    assert np.array_equal(train["frames"][4], make_video(c, 4).frames)
    with pytest.raises(DataError):
        make_split(c, 4, "holdout")


def test_cached_split_round_trip_without_pickle(tmp_path, monkeypatch):
    c = SyntheticConfig("both", size=48, frames=6, distractors=1)
    fresh = make_split(c, 10, "val")
    first = cached_split(c, 10, "val", tmp_path / "cache")
    path = cache_path(c, 10, "val", tmp_path / "cache")
    assert path.is_file() and path.suffix == ".npz"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    with zipfile.ZipFile(path) as z:
        assert all(n.endswith(".npy") for n in z.namelist())
    with np.load(path, allow_pickle=False) as z:  # loads without pickle: no object arrays
        assert all(z[k].dtype != object for k in z.files)
    # The second call reads the file: generating again would fail.
    monkeypatch.setattr(syn, "make_split", lambda *a, **k: pytest.fail("regenerated"))
    second = cached_split(c, 10, "val", tmp_path / "cache")
    for d in (first, second):
        assert set(d) == set(fresh)
        for k in fresh:
            assert np.array_equal(d[k], fresh[k], equal_nan=True), k
    # Other settings get another file; a corrupt file is regenerated with a warning.
    assert cache_path(c, 10, "test", tmp_path) != cache_path(c, 10, "val", tmp_path)
    assert cache_path(SyntheticConfig("both", size=48, frames=6), 10, "val", tmp_path).name != path.name
    monkeypatch.undo()
    path.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="regenerating"):
        third = cached_split(c, 10, "val", tmp_path / "cache")
    assert np.array_equal(third["frames"], fresh["frames"])


def test_dataset_generates_on_the_fly():
    c = SyntheticConfig("appearance", size=64, frames=8)
    ds = SyntheticVideoDataset(c, 10, "test")
    assert len(ds) == 10 and ds.classes == list(APPEARANCES)
    frames, label = ds[3]
    split = make_split(c, 10, "test")
    assert np.array_equal(frames, split["frames"][3]) and label == split["labels"][3] == 3
    assert np.array_equal(ds[-1][0], split["frames"][9])
    with pytest.raises(IndexError):
        ds[10]
    loader_batch = [ds[i][0] for i in range(2)]
    assert all(f.shape == (8, 64, 64, 3) and f.dtype == np.uint8 for f in loader_batch)
