"""Degenerate results are loud (issue 11, item 11): each case gives a warning naming the setting to
change, from the core result (VCC, VTCD, static/dynamic) and in the run's manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from core.vcc import PruneSigmoid, VCCConfig, build_vcc
from tests.test_vcc import TinyCNN, blocky_images, bundle_of, tiny_bundle

WARNING_KEYS = {"code", "message", "setting", "layer", "figure"}


def codes(warns: list[dict[str, Any]]) -> dict[tuple[str, str | None], dict[str, Any]]:
    for w in warns:
        assert set(w) == WARNING_KEYS and w["message"] and "\n" not in w["message"]
        json.dumps(w, allow_nan=False)
    return {(w["code"], w["layer"]): w for w in warns}


# ----------------------------------------------------------------------------------------------
# VCC

SMALL = dict(grid=12, n_concepts=4, n_random_sets=4, random_set_size=3, suppression_scales=(0.0, 2.0),
             n_random_directions=2, batch_size=16, kmeans_n_init=2, fidelity=False)


def small_vcc(bundle: Any = None, images: list[np.ndarray] | None = None, randoms: list[np.ndarray] | None = None,
              **cfg: Any) -> Any:
    return build_vcc(bundle or tiny_bundle(), ["stem", "block1", "block2"],
                     images if images is not None else blocky_images(5, 0),
                     randoms if randoms is not None else blocky_images(30, 1), 2, VCCConfig(**{**SMALL, **cfg}))


def test_vcc_layers_left_without_concepts_are_warnings_naming_the_settings() -> None:
    res = small_vcc(prune=PruneSigmoid(A=1000.0, K=1000.0))  # every cluster is under Y(t)
    got = codes(res.warnings)
    for layer in ("stem", "block1", "block2"):
        assert not res.graph.layer_nodes(layer)
        w = got[("vcc.empty_layer", layer)]
        assert w["setting"] == "--n-images" and w["figure"] == "graph"
        for flag in ("--n-images", "--n-concepts", "--clusters-per-segments", "--prune"):
            assert flag in w["message"]
    few = got[("vcc.few_images", None)]
    assert "5 images" in few["message"] and "--n-images" in few["message"]


def test_vcc_with_enough_images_and_random_images_is_quiet() -> None:
    res = small_vcc(prune=PruneSigmoid(A=0.0, K=2.0), n_images=5, random_set_size=2, n_random_sets=3)
    assert all(res.graph.layer_nodes(layer) for layer in res.graph.layers)
    assert res.warnings == []


def test_vcc_overlapping_random_sets_and_class_images_among_the_random_ones() -> None:
    images = blocky_images(5, 0)
    randoms = [*blocky_images(8, 1), images[1].copy(), images[3].copy()]
    res = small_vcc(images=images, randoms=randoms, prune=PruneSigmoid(A=0.0, K=2.0), n_images=5)
    got = codes(res.warnings)
    overlap = got[("vcc.random_overlap", None)]
    assert "10 random images" in overlap["message"] and "--random" in overlap["message"]
    assert "--n-random-sets" in overlap["message"] and overlap["setting"] == "--random"
    shared = got[("vcc.random_has_class_images", None)]
    assert shared["message"].startswith("2 of the random images are also images of the class")


class NaNOnBright(TinyCNN):
    """TinyCNN whose logits are NaN for an input brighter than 0.9 on average (after normalisation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        bright = x.mean((1, 2, 3)) > 0.9
        return torch.where(bright[:, None], torch.full_like(out, float("nan")), out)


def test_vcc_image_with_nan_logits_is_left_out_with_a_warning() -> None:
    bundle = bundle_of(NaNOnBright(), stages=["stem", "block1", "block2"])
    images = blocky_images(5, 0)
    images.insert(2, np.full((30, 40, 3), 255, np.uint8))
    res = small_vcc(bundle, images, prune=PruneSigmoid(A=0.0, K=2.0), fidelity=True)
    w = codes(res.warnings)[("vcc.nonfinite", None)]
    assert "1 of the 6 class images (index 2)" in w["message"]
    assert res.kept_images == [0, 1, 3, 4, 5]
    assert 2 not in set(res.segments.image.tolist()) and set(res.segments.image.tolist()) == {0, 1, 3, 4, 5}
    assert np.isfinite(res.segment_logits).all()
    assert res.graph.meta["n_images"] == 5 and res.graph.meta["kept_images"] == [0, 1, 3, 4, 5]


def test_vcc_all_images_nan_is_a_one_line_error() -> None:
    from core.errors import DataError

    bundle = bundle_of(NaNOnBright(), stages=["stem", "block1", "block2"])
    with pytest.raises(DataError, match="NaN or infinite") as e:
        small_vcc(bundle, [np.full((30, 40, 3), 255, np.uint8)] * 2)
    assert "\n" not in str(e.value)


def test_clusters_per_segments_scales_k_with_the_segments() -> None:
    off = VCCConfig()
    assert off.clusters_per_segments is None and off.clusters_for(10) == off.clusters_for(10_000) == 25
    cfg = VCCConfig(clusters_per_segments=0.1, min_clusters=3, n_concepts=25)
    assert [cfg.clusters_for(t) for t in (0, 10, 44, 46, 120, 1000)] == [3, 3, 4, 5, 12, 25]
    assert VCCConfig(clusters_per_segments=0.5, min_clusters=9, n_concepts=4).clusters_for(100) == 4
    assert VCCConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="clusters_per_segments"):
            VCCConfig(clusters_per_segments=bad)
    res = small_vcc(prune=PruneSigmoid(A=0.0, K=2.0), clusters_per_segments=0.2, min_clusters=2, n_concepts=6)
    for layer, k in res.graph.meta["n_clusters"].items():
        t = res.graph.meta["segments_per_layer"][layer]
        assert k == max(2, min(round(0.2 * t), 6))
        assert len(res.concepts[layer].cluster_sizes) == min(k, t)
    assert small_vcc(prune=PruneSigmoid(A=0.0, K=2.0), n_concepts=6).graph.meta["n_clusters"] == {
        "stem": 6, "block1": 6, "block2": 6}


def test_clusters_per_segments_flag(tmp_path: Path) -> None:
    from precompute import cli
    from precompute import vcc as vcc_job

    args = cli.parse_args(["vcc", "--model", "m", "--clusters-per-segments", "0.1", "--min-clusters", "3"])
    cfg = vcc_job.config_from_args(args)
    assert (cfg.clusters_per_segments, cfg.min_clusters) == (0.1, 3)
    assert vcc_job.config_from_args(cli.parse_args(["vcc", "--model", "m"])).clusters_per_segments is None


# ----------------------------------------------------------------------------------------------
# Static / dynamic

DEAD_MODEL = '''
import torch
from torch import nn

MODEL_SPEC = {"input": "video", "size": 32, "frames": 8, "classes": ["left", "right"],
              "stages": ["conv1", "dead"]}


class DeadLayer(nn.Module):
    """Frame-wise convolutions; ``dead`` is a ReLU that never fires (every unit constant 0)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.off = nn.Conv2d(8, 4, 1)
        self.dead = nn.ReLU()
        self.fc = nn.Linear(12, 2)

    def forward(self, x):
        b, c, t, h, w = x.shape
        f = torch.relu(self.conv1(x.transpose(1, 2).reshape(b * t, c, h, w)))
        d = self.dead(self.off(f) - 1e4)
        g = torch.cat([f, d], 1).mean(dim=(2, 3)).reshape(b, t, -1).mean(dim=1)
        return self.fc(g)


def make():
    torch.manual_seed(0)
    return DeadLayer()
'''


def test_static_dynamic_dead_layer_and_few_pairs_in_core() -> None:
    from core.static_dynamic.scores import MIN_PAIRS, few_pairs_warning, layer_warnings, score_layer

    rng = np.random.default_rng(0)
    live = [rng.normal(size=(20, 6)) for _ in range(4)]
    assert layer_warnings("l", score_layer(*live)) == []
    half = [np.concatenate([z[:, :3], np.zeros((20, 3))], 1) for z in live]
    assert layer_warnings("l", score_layer(*half)) == []  # some dead units: counted, not a dead layer
    dead = score_layer(*[np.full((20, 6), 0.5) for _ in range(4)])
    assert dead.n_dead == 6 and np.isnan(dead.S_static)
    (w,) = codes(layer_warnings("blocks.1", dead)).values()
    assert (w["code"], w["layer"], w["setting"]) == ("static_dynamic.dead_layer", "blocks.1", "--layers")
    assert "every one of the 6 units of blocks.1" in w["message"]
    assert few_pairs_warning(MIN_PAIRS) is None
    few = few_pairs_warning(30, 0.5)
    assert few["setting"] == "--pairs" and "30 pairs" in few["message"] and "0.14" in few["message"]


def test_static_dynamic_job_records_dead_layers_and_few_pairs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from core.artifacts import open_run
    from precompute import cli
    from tests.test_static_dynamic import _video_folder

    src = tmp_path / "dead_model.py"
    src.write_text(DEAD_MODEL)
    videos = _video_folder(tmp_path / "videos")
    rc = cli.main(["static-dynamic", "--model", f"py:{src}:make", "--videos", str(videos), "--pairs", "6",
                   "--out", str(tmp_path / "runs"), "--examples", "0", "--run-id", "dead", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "warning [dead]: every one of the 4 units of dead is constant" in err
    run = open_run(tmp_path / "runs" / "static-dynamic" / "dead")
    got = codes(run.warnings)
    assert set(got) == {("static_dynamic.few_pairs", None), ("static_dynamic.dead_layer", "dead")}
    assert got[("static_dynamic.dead_layer", "dead")]["figure"] == "layers"


# ----------------------------------------------------------------------------------------------
# VTCD


def planted_cris(effects: list[float], n_videos: int, n_masks: int, noise: float, seed: int = 0) -> Any:
    """A CRIS record where removing unit u lowers the metric by ``effects[u]`` (plus Gaussian noise)."""
    from core.vtcd.importance import CRISResult, draw_masks

    rng = np.random.default_rng(seed)
    removed = np.stack([draw_masks(n_masks, len(effects), 0.5, rng) for _ in range(n_videos)])
    values = 1.0 - removed @ np.asarray(effects) + noise * rng.normal(size=(n_videos, n_masks))
    return CRISResult.from_record([f"u{i}" for i in range(len(effects))], "probability", 0.5,
                                  np.zeros(n_videos, int), np.ones(n_videos), removed, values, n_boot=200, seed=seed)


def test_cris_convergence_criterion() -> None:
    from core.vtcd.importance import ranking_convergence

    effects = [0.5, 0.4, 0.3, 0.2, 0.1, 0.0, 0.0, 0.0]
    settled = planted_cris(effects, 4, 400, 0.01)
    assert ranking_convergence(settled, 5) == (5, 5)
    noisy = planted_cris([0.0] * 8, 2, 16, 1.0)
    separated, k = ranking_convergence(noisy, 5)
    assert k == 5 and separated < 3
    assert ranking_convergence(planted_cris([0.3, 0.1], 2, 50, 0.01), 5) == (1, 1)  # k = units - 1
    no_ci = planted_cris(effects, 2, 50, 0.01)
    no_ci.ci_low = None
    assert ranking_convergence(no_ci) is None and ranking_convergence(None) is None


def fake_vtcd_result(n_videos: int, layers_with_concepts: list[str], layers: list[str], **cfg: Any) -> Any:
    from types import SimpleNamespace

    from core.vtcd import VTCDConfig
    from core.vtcd.pipeline import VTCDResult

    units = [SimpleNamespace(layer=name, n_concepts=2) for name in layers_with_concepts]
    return VTCDResult(spec="test", config=VTCDConfig(**cfg), sites=[SimpleNamespace(layer=name) for name in layers],
                      video_shape=(8, 32, 32), seg_grid=(8, 16, 16), units=units,  # type: ignore[arg-type]
                      logits=np.zeros((n_videos, 3)), targets=None, layer_order=layers)


def test_vtcd_degenerate_warnings() -> None:
    from core.vtcd.pipeline import degenerate_warnings

    settled = planted_cris([0.5, 0.4, 0.3, 0.2, 0.1, 0.0], 12, 400, 0.01)
    fine = fake_vtcd_result(12, ["b0", "b1"], ["b0", "b1"])
    assert degenerate_warnings(fine, settled, settled) == []
    noisy = planted_cris([0.0] * 8, 2, 16, 1.0)
    bad = fake_vtcd_result(3, ["b0"], ["b0", "b1"])
    got = codes(degenerate_warnings(bad, noisy, noisy))
    assert set(got) == {("vtcd.few_clips", None), ("vtcd.empty_layer", "b1"), ("vtcd.cris_unconverged", None),
                        ("vtcd.head_cris_unconverged", None)}
    assert got[("vtcd.few_clips", None)]["message"].startswith("3 clips (fewer than 10)")
    assert "min_tubelet_fraction" in got[("vtcd.empty_layer", "b1")]["message"]  # core names config fields
    msg = got[("vtcd.cris_unconverged", None)]["message"]
    assert "of the top 5 have a 95% bootstrap interval" in msg and "n_masks" in msg
    assert got[("vtcd.head_cris_unconverged", None)]["setting"] == "head_masks"
    assert degenerate_warnings(fake_vtcd_result(3, ["b0"], ["b0"], min_clips=3)) == []


def test_vtcd_head_without_tubelets_gives_an_empty_layer_not_a_traceback(tiny_video_net: Any) -> None:
    from core.models import ModelBundle, Preprocessing
    from core.vtcd import VTCDConfig, discover
    from core.vtcd.pipeline import degenerate_warnings

    bundle = ModelBundle("tiny", tiny_video_net.eval(), Preprocessing(input="video", size=(16, 16), frames=4,
                                                                      mean=(0.5,) * 3, std=(0.5,) * 3),
                         class_names=["a", "b", "c", "d"], stages=["stem", "block"])
    videos = np.random.default_rng(0).integers(0, 255, size=(3, 4, 16, 16, 3), dtype=np.uint8)
    cfg = VTCDConfig(min_tubelet_fraction=1.01, max_concepts=3, kmeans_n_init=1, cnmf_max_iter=20)
    res = discover(bundle, list(videos), ["stem"], config=cfg)
    assert res.units == []
    assert ("vtcd.empty_layer", "stem") in codes(degenerate_warnings(res))


def test_vtcd_job_records_its_warnings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from core.artifacts import open_run
    from precompute import cli
    from tests.test_vtcd_job import make_tiny_ckpt, vtcd_args

    ckpt = make_tiny_ckpt(tmp_path / "tiny-vit")
    rc = cli.main(vtcd_args(ckpt, tmp_path / "runs", "w", "--no-attribution", "--no-diagnostics"))
    err = capsys.readouterr().err
    assert rc == 0, err
    got = codes(open_run(tmp_path / "runs" / "vtcd" / "w").warnings)
    assert got[("vtcd.few_clips", None)]["setting"] == "--videos"
    assert "warning: 3 clips (fewer than 10)" in err
