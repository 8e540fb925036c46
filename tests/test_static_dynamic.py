"""Static/dynamic units: scores against the reference data and known answers, pairs, styles, removal, the job."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data.videos import write_video
from core.models import count_hooks, resolve_model
from core.static_dynamic import removal as rm
from core.static_dynamic.pairs import build_pair, plan_pairs, shuffle_permutation
from core.static_dynamic.scores import CATEGORIES, classify_units, score_layer, softmax_percentages, unit_scores
from core.static_dynamic.styles import STYLES, stylize
from precompute import cli

REF = Path(__file__).resolve().parent / "data"  # a copy of the project's shared reference data (methods.md)

# ----------------------------------------------------------------------------------------------
# Scores


def test_reference_data_reproduced_to_1e9() -> None:
    d = np.load(REF / "static_dynamic_reference.npz")
    ref = json.loads((REF / "static_dynamic_reference.json").read_text())
    got = score_layer(d["za_static"], d["zb_static"], d["za_dynamic"], d["zb_dynamic"], lam=0.5)
    for key, value in ref.items():
        assert abs(getattr(got, key) - value) <= 1e-9, key
    np.testing.assert_allclose(got.s_static, d["s_static"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(got.s_dynamic, d["s_dynamic"], rtol=0, atol=1e-9)


def test_identical_pairs_score_one() -> None:
    z = np.random.default_rng(0).normal(size=(50, 12))
    got = score_layer(z, z, z, z)
    assert got.S_static == pytest.approx(1.0, abs=1e-12) and got.S_dynamic == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(got.s_static, 1.0, atol=1e-12)
    # Identical pairs built from other clips: per-unit scores stay exactly 1, the layer score is near 1.
    w = np.random.default_rng(1).normal(size=(50, 12)) * 1.3
    other = score_layer(z, z, w, w)
    np.testing.assert_allclose(other.s_dynamic, 1.0, atol=1e-12)
    assert other.S_static != pytest.approx(1.0, abs=1e-6)


def test_independent_pairs_score_near_zero_and_anticorrelated_negative() -> None:
    rng = np.random.default_rng(2)
    za, zb = rng.normal(size=(4000, 8)), rng.normal(size=(4000, 8))
    assert np.all(np.abs(unit_scores(za, zb)) < 0.06)
    assert np.all(unit_scores(za, -za) < -0.99)


def test_percentages_and_counts_add_up() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(size=(80, 40))
    got = score_layer(base, base + rng.normal(size=base.shape) * 0.5, base, rng.normal(size=base.shape))
    assert got.pct_static + got.pct_dynamic + got.pct_identical == pytest.approx(100.0, abs=1e-9)
    assert got.n_static + got.n_dynamic + got.n_joint + got.n_residual + got.n_dead == got.n_units == 40
    assert got.n_static > 30 and got.n_dynamic == 0  # the dynamic factor here is noise
    d, s, i = softmax_percentages(1.0, 1.0)
    assert max(d, s) < 100 / 3 + 1e-9 and i == pytest.approx(d)
    assert softmax_percentages(1.0, -1.0)[0] < 47.0  # the constant third entry squeezes each factor


def test_dead_unit_is_dead_not_static() -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(size=(30, 5))
    z[:, 2] = 0.7  # constant: a unit that never changes
    w = rng.normal(size=z.shape)
    w[:, 2] = 0.7
    got = score_layer(z, z, z, w)
    assert got.n_dead == 1 and np.isnan(got.s_static[2]) and np.isnan(got.s_dynamic[2])
    assert got.n_static == 4
    cats = classify_units(np.array([0.9, 0.1, 0.9, 0.1, np.nan]), np.array([0.1, 0.9, 0.9, 0.1, 0.9]))
    assert [CATEGORIES[c] for c in cats] == ["static", "dynamic", "joint", "residual", "dead"]


# ----------------------------------------------------------------------------------------------
# Pairs and styles


def _clip(t: int = 8, size: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = np.zeros((t, size, size, 3), np.uint8)
    frames[:] = rng.integers(40, 200, size=(1, size, size, 3), dtype=np.uint8)
    for k in range(t):  # a bright square moving right
        frames[k, 8:14, 2 + 2 * k: 8 + 2 * k] = (250, 240, 20)
    return frames


def test_shuffle_is_never_identity_and_plans_are_reproducible() -> None:
    rng = np.random.default_rng(0)
    assert all(np.any(shuffle_permutation(2, rng) != [0, 1]) for _ in range(50))
    a = plan_pairs(5, 12, 8, list(STYLES), seed=3)
    assert a == plan_pairs(5, 12, 8, list(STYLES), seed=3) and a != plan_pairs(5, 12, 8, list(STYLES), seed=4)
    static, dynamic = [p for p in a if p.factor == "static"], [p for p in a if p.factor == "dynamic"]
    assert len(static) == len(dynamic) == 12 and {p.clip for p in static} == set(range(5))
    assert all(sorted(p.perm) == list(range(8)) and list(p.perm) != list(range(8)) for p in static)
    assert all(p.style_a != p.style_b for p in dynamic)
    flow = plan_pairs(5, 12, 8, list(STYLES), seed=3, two_stream=True)
    assert all(p.perm is None and p.hue_shift is not None for p in flow if p.factor == "static")


def test_build_pair_shares_the_right_factor() -> None:
    clip = _clip()
    plans = plan_pairs(1, 2, len(clip), ["palette", "texture"], seed=0)

    def styled(_i: int, s: str) -> np.ndarray:
        return stylize(clip, s)

    v1, v2 = build_pair(plans[0], styled)
    assert sorted(map(bytes, v1)) == sorted(map(bytes, v2)) and not np.array_equal(v1, v2)  # same frames, reordered
    d1, d2 = build_pair(plans[2], styled)
    assert not np.array_equal(d1, d2) and d1.shape == d2.shape
    (r1, f1), (r2, f2) = build_pair(plan_pairs(1, 2, len(clip), ["palette", "texture"], two_stream=True)[0],
                                    styled, lambda _i: clip)
    assert np.array_equal(r1, r2) and not np.array_equal(f1, f2)


@pytest.mark.parametrize("style", list(STYLES))
def test_styles_are_framewise_deterministic_and_change_the_look(style: str) -> None:
    clip = _clip()
    out = stylize(clip, style)
    assert out.shape == clip.shape and out.dtype == np.uint8
    assert np.array_equal(out, stylize(clip, style))
    # The same function of each frame: no per-frame randomness that would add fake dynamics.
    for t in (0, 5):
        assert np.array_equal(out[t], stylize(clip[t:t + 1], style)[0])
    assert np.abs(out.astype(int) - clip).mean() > 10
    still = np.repeat(clip[:1], 4, axis=0)
    assert np.all(stylize(still, style) == stylize(still, style)[0])  # a still clip stays still


# ----------------------------------------------------------------------------------------------
# Removal


def test_ranking_and_auc() -> None:
    order = rm.ranking(np.array([0.2, np.nan, 0.9, -0.5]))
    assert order.tolist() == [2, 0, 3, 1]
    assert rm.top_fraction(order, 0.5).tolist() == [2, 0]
    assert rm.auc([0, 0.5, 1], [1, 1, 1]) == pytest.approx(1.0)
    assert rm.auc([0, 1], [1, 0]) == pytest.approx(0.5)


def test_zeroed_units_hook_zeroes_and_is_removed() -> None:
    bundle = resolve_model("c2d-motion")
    x = torch.randn(2, 3, 16, 64, 64)
    with torch.no_grad():
        before = bundle(x)
        with rm.zeroed_units(bundle, "layer3", np.arange(128)):
            gone = bundle(x)
        after = bundle(x)
    assert torch.allclose(before, after) and count_hooks(bundle.model) == 0
    bias = bundle.model.fc.bias.expand(2, -1)
    assert torch.allclose(gone, bias, atol=1e-6)  # every unit zeroed: only the classifier's bias is left
    with pytest.raises(RuntimeError), rm.zeroed_units(bundle, "layer3", [0]):
        raise RuntimeError("boom")
    assert count_hooks(bundle.model) == 0


# ----------------------------------------------------------------------------------------------
# The job


ORDER_BLIND = '''
import torch
from torch import nn

MODEL_SPEC = {"input": "video", "size": 32, "frames": 8, "classes": ["left", "right"],
              "stages": ["conv1", "conv2"]}


class FrameMean(nn.Module):
    """Frame-wise convolutions and a temporal mean: blind to frame order."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        b, c, t, h, w = x.shape
        f = x.transpose(1, 2).reshape(b * t, c, h, w)
        f = torch.relu(self.conv2(torch.relu(self.conv1(f))))
        return self.fc(f.mean(dim=(2, 3)).reshape(b, t, -1).mean(dim=1))


def make():
    torch.manual_seed(0)
    return FrameMean()
'''


def _video_folder(root: Path) -> Path:
    for label, step in (("left", -2), ("right", 2)):
        for k in range(3):
            clip = _clip(t=12, size=40, seed=k)
            if step < 0:
                clip = clip[::-1]
            (root / label).mkdir(parents=True, exist_ok=True)
            write_video(root / label / f"v{k}.mp4", np.ascontiguousarray(clip), fps=10)
    return root


def test_order_blind_py_model_on_a_user_folder_has_no_dynamic_units(tmp_path: Path) -> None:
    src = tmp_path / "frame_mean.py"
    src.write_text(ORDER_BLIND)
    videos = _video_folder(tmp_path / "videos")
    out = tmp_path / "runs"
    status = cli.main(["static-dynamic", "--model", f"py:{src}:make", "--videos", str(videos), "--pairs", "12",
                       "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--removal",
                       "--removal-fractions", "0", "0.5", "1", "--removal-seeds", "2", "--examples", "1",
                       "--run-id", "blind", "--device", "cpu"])
    assert status == 0
    run = out / "static-dynamic" / "blind"
    layers = json.loads((run / "layers.json").read_text())
    units = np.load(run / "units.npz")
    assert [r["layer"] for r in layers] == ["conv1", "conv2"]
    for i, r in enumerate(layers):
        assert r["n_dynamic"] == 0
        assert r["n_static"] + r["n_dynamic"] + r["n_joint"] + r["n_residual"] + r["n_dead"] == r["n_units"]
        live = np.isfinite(units[f"s_static_{i}"])
        np.testing.assert_allclose(units[f"s_static_{i}"][live], 1.0, atol=1e-9)
    removal = json.loads((run / "removal.json").read_text())
    assert removal["n_videos"] == 6 and removal["fractions"] == [0.0, 0.5, 1.0]
    assert len(removal["curves"][0]["random_std"]) == 3
    examples = json.loads((run / "examples.json").read_text())
    assert all((run / f).is_file() for f in examples[0]["files"].values())
    assert sorted(p.name for p in (tmp_path / "cache" / "styles").rglob("*.npz"))  # restylings were cached


def test_two_models_share_pairs_and_restyles_come_from_the_cache(tmp_path: Path, monkeypatch) -> None:
    from core.static_dynamic import analysis

    calls = []
    real = analysis.stylize
    monkeypatch.setattr(analysis, "stylize", lambda c, s: calls.append(s) or real(c, s))
    args = ["static-dynamic", "--model", "c2d-motion", "r3d-motion", "--videos", "synthetic:motion:6",
            "--pairs", "8", "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"),
            "--examples", "0", "--device", "cpu"]
    assert cli.main([*args, "--run-id", "a"]) == 0
    first = len(calls)
    assert 0 < first <= 6 * 4  # each (clip, style) restyled once for both models
    assert cli.main([*args, "--run-id", "b"]) == 0
    assert len(calls) == first  # the second analysis of the same clips restyles nothing
    layers = json.loads((tmp_path / "runs" / "static-dynamic" / "a" / "layers.json").read_text())
    assert {r["model"] for r in layers} == {"c2d-motion", "r3d-motion"}
    c2d = [r for r in layers if r["model"] == "c2d-motion"]
    assert all(r["n_dynamic"] == 0 for r in c2d)  # C2D is blind to frame order
    manifest = json.loads((tmp_path / "runs" / "static-dynamic" / "a" / "manifest.json").read_text())
    assert set(manifest["summary"]["final_layer"]) == {"c2d-motion", "r3d-motion"}


@pytest.mark.parametrize("extra, message", [
    (["--pairs", "1"], "--pairs"),
    (["--styles", "watercolour"], "unknown style"),
    (["--styles", "palette"], "two styles"),
    (["--removal", "--videos", "demo"], "labelled"),
    (["--removal-fractions", "0.5", "0.2"], "increasing"),
    (["--removal", "--removal-layers", "layer9"], "not among the analysed layers"),
])
def test_bad_input_is_one_line(tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    args = ["static-dynamic", "--model", "c2d-motion", "--videos", "synthetic:motion:4", "--pairs", "4",
            "--out", str(tmp_path), "--examples", "0", "--cache-dir", ""]
    assert cli.main([*args, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_image_model_is_refused(tmp_path: Path, capsys) -> None:
    assert cli.main(["static-dynamic", "--model", "efficientnet_lite0", "--out", str(tmp_path)]) == 2
    assert "video model" in capsys.readouterr().err


def test_users_own_stylized_copies(tmp_path: Path, capsys) -> None:
    src = tmp_path / "frame_mean.py"
    src.write_text(ORDER_BLIND)
    videos = _video_folder(tmp_path / "videos")
    styles = tmp_path / "styles"
    for name, change in (("inverted", lambda c: 255 - c), ("dark", lambda c: c // 3)):
        for f in videos.rglob("*.mp4"):
            from core.data.videos import read_video

            frames, _ = read_video(f)
            target = styles / name / f.relative_to(videos)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_video(target, np.ascontiguousarray(change(frames)), fps=10)
    args = ["static-dynamic", "--model", f"py:{src}:make", "--videos", str(videos), "--pairs", "6",
            "--out", str(tmp_path / "runs"), "--examples", "0", "--cache-dir", "", "--device", "cpu"]
    assert cli.main([*args, "--styles", str(styles), "--run-id", "own"]) == 0
    manifest = json.loads((tmp_path / "runs" / "static-dynamic" / "own" / "manifest.json").read_text())
    assert manifest["config"]["styles"] == ["dark", "inverted"]
    pairs = json.loads((tmp_path / "runs" / "static-dynamic" / "own" / "pairs.json").read_text())
    assert {p["style_a"] for v in pairs.values() for p in v} <= {"dark", "inverted"}
    next((styles / "dark").rglob("*.mp4")).unlink()
    assert cli.main([*args, "--styles", str(styles), "--run-id", "broken"]) == 2
    assert "mirror the video folder" in capsys.readouterr().err
