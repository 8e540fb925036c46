"""The Python API of VTCD (issue 12): `core.vtcd.analyse` gives the job's numbers, resumes through a
checkpoint store, saves and loads itself; `core.vtcd.rosetta` over results; the config is the CLI's only
source of flags and defaults; the examples run."""

from __future__ import annotations

import dataclasses
import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.checkpoint import MemoryStore
from core.errors import ConfigError, UserError
from core.models.resolve import ASSETS_MODELS
from core.vtcd import RosettaConfig, VTCDAnalysis, VTCDConfig, analyse, rosetta
from precompute import cli
from tests.test_vtcd_job import VIDEOS, make_tiny_ckpt, vtcd_args

ROOT = Path(__file__).resolve().parents[1]
# The job's FAST flags (tests/test_vtcd_job.py) as a config.
FAST = VTCDConfig(n_masks=16, head_masks=8, max_concepts=4, kmeans_n_init=2, cnmf_max_iter=100, attribution_steps=5,
                  n_random_orders=2, batch_size=16)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("vtcd-api")
    ckpt = make_tiny_ckpt(base / "tiny-vit")
    root = base / "runs"
    assert cli.main(vtcd_args(ckpt, root, "job", "--no-attribution")) == 0
    return {"ckpt": ckpt, "root": root, "run": root / "vtcd" / "job"}


@pytest.fixture(scope="module")
def result(tiny: dict[str, Path]) -> VTCDAnalysis:
    return analyse(f"ckpt:{tiny['ckpt']}", VIDEOS, FAST, attribution=False, device="cpu")


def test_analyse_gives_the_jobs_numbers(tiny: dict[str, Path], result: VTCDAnalysis) -> None:
    doc = json.loads((tiny["run"] / "concepts.json").read_text())
    assert [c["id"] for c in doc["concepts"]] == result.concept_names
    expected = [None if not np.isfinite(v) else float(v) for v in result.concepts.importance]
    assert [c["importance"] for c in doc["concepts"]] == expected  # exactly: same seed, same code path
    assert [u["importance"] for u in doc["units"]] == [float(v) for v in result.heads.importance]
    with np.load(tiny["run"] / "cris.npz") as z:
        np.testing.assert_array_equal(z["concept_values"], result.concepts.values)
        np.testing.assert_array_equal(z["head_values"], result.heads.values)
    with np.load(tiny["run"] / "tubelets.npz") as z:
        for i, u in enumerate(result.discovery.units):
            np.testing.assert_array_equal(z[f"u{i}_assignment"], u.assignment)


def test_save_and_load_round_trip(tiny: dict[str, Path], result: VTCDAnalysis, tmp_path: Path) -> None:
    path = result.save(tmp_path, run_id="py")
    assert path == tmp_path / "vtcd" / "py"
    saved = json.loads((path / "concepts.json").read_text())
    job = json.loads((tiny["run"] / "concepts.json").read_text())
    assert saved["concepts"] == job["concepts"] and saved["units"] == job["units"]
    back = VTCDAnalysis.load(path)
    assert back.concept_names == result.concept_names and back.config == result.config
    np.testing.assert_array_equal(back.concepts.importance, result.concepts.importance)
    np.testing.assert_array_equal(back.concepts.removed, result.concepts.removed)
    np.testing.assert_array_equal(back.heads.importance, result.heads.importance)
    assert [(u.layer, u.head, u.n_concepts) for u in back.units] == \
        [(u.layer, u.head, u.n_concepts) for u in result.discovery.units]
    np.testing.assert_array_equal(back.concept_map(0), result.discovery.units[0].concept_map())
    assert {w["code"] for w in back.warnings} == {w["code"] for w in result.warnings}


def test_interrupted_analyse_resumes_from_the_store(tiny: dict[str, Path], result: VTCDAnalysis,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import core.vtcd.importance as importance
    import core.vtcd.pipeline as pipeline

    calls = {"discover": 0, "masked": 0}
    real_discover, real_masked = pipeline.discover, importance.masked_metrics

    def discover(*a, **k):
        calls["discover"] += 1
        return real_discover(*a, **k)

    def masked(*a, **k):
        calls["masked"] += 1
        if calls["masked"] == 2:  # the second video of the concepts' CRIS
            raise RuntimeError("injected")
        return real_masked(*a, **k)

    monkeypatch.setattr(pipeline, "discover", discover)
    monkeypatch.setattr(importance, "masked_metrics", masked)
    store = MemoryStore()
    with pytest.raises(RuntimeError, match="injected"):
        analyse(f"ckpt:{tiny['ckpt']}", VIDEOS, FAST, store, attribution=False, device="cpu")
    assert calls["discover"] == 2  # one per layer, both saved
    assert store.has("parts/cris-concepts/video-0000.npz") and store.has("parts/cris-concepts/video-0001.npz")
    assert not store.has("parts/cris-concepts/video-0002.npz")
    calls.update(discover=0, masked=10)
    again = analyse(f"ckpt:{tiny['ckpt']}", VIDEOS, FAST, store, attribution=False, device="cpu")
    assert calls["discover"] == 0
    # recomputed: the concepts' video 2 and the heads' videos 1 and 2 (each first video goes through run_masks)
    assert calls["masked"] == 10 + 3
    assert store.has("parts/cris-concepts/video-0002.npz") and store.has("parts/cris-heads/video-0002.npz")
    np.testing.assert_array_equal(again.concepts.importance, result.concepts.importance)
    np.testing.assert_array_equal(again.heads.importance, result.heads.importance)


def test_in_memory_clips_and_bad_arguments(tiny: dict[str, Path], result: VTCDAnalysis) -> None:
    small = dataclasses.replace(FAST, head_masks=0, bootstrap=0)
    out = analyse(f"ckpt:{tiny['ckpt']}", result.clips, small, attribution=False, layers=["blocks.1"],
                  target="prediction", device="cpu")
    assert out.heads is None and out.target == {"mode": "prediction"}
    assert out.video_ids == ["clip-000", "clip-001", "clip-002"]
    with pytest.raises(UserError, match="has 2 heads"):
        analyse(f"ckpt:{tiny['ckpt']}", result.clips, small, heads=[5], device="cpu")
    with pytest.raises(UserError, match="synthetic"):
        analyse(f"ckpt:{tiny['ckpt']}", result.clips, small, ground_truth_masks=True, device="cpu")
    with pytest.raises(UserError, match="at least 2 clips"):
        analyse(f"ckpt:{tiny['ckpt']}", result.clips[:1], small, device="cpu")


def test_rosetta_over_results_and_runs(tiny: dict[str, Path], result: VTCDAnalysis) -> None:
    twins = rosetta([result, tiny["run"]], RosettaConfig(epsilon=1.0, delta=0.5, average="present"))
    pairs = [t for t in twins.tuples if t["d"] == 2]
    assert pairs and all(t["r"] > 0.5 for t in pairs)
    assert any(t["concepts"][0] == t["concepts"][1] and t["r"] == 1.0 for t in pairs)  # each concept meets itself
    assert twins.labels[0] != twins.labels[1]
    with pytest.raises(UserError, match="at least two"):
        rosetta([result], RosettaConfig())
    with pytest.raises(ConfigError, match="epsilon"):
        RosettaConfig(epsilon=0.0)


def test_config_is_frozen_validated_and_names_fields() -> None:
    cfg = VTCDConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_masks = 3  # type: ignore[misc]
    with pytest.raises(ConfigError) as err:
        VTCDConfig(n_masks=1)
    assert err.value.field == "n_masks" and "n_masks" in str(err.value) and "--" not in str(err.value)
    assert isinstance(err.value, ValueError)  # callers that caught ValueError still do
    for f in dataclasses.fields(VTCDConfig):
        assert f.metadata.get("help"), f"{f.name} has no help"


def test_every_setting_is_a_flag_and_config_files_use_field_names(tmp_path: Path) -> None:
    from precompute import vtcd as job

    parser = cli.build_parser()
    sub = cli._subparsers(parser)
    vtcd_help, rosetta_help = sub["vtcd"].format_help(), sub["rosetta"].format_help()
    for f in dataclasses.fields(VTCDConfig):
        assert job.flag_of(f.name) in vtcd_help, f.name
    for f in dataclasses.fields(RosettaConfig):
        assert "--" + f.name.replace("_", "-") in rosetta_help, f.name
    conf = tmp_path / "c.yaml"
    conf.write_text("model: m\nn_masks: 8\nshare_prefix: false\ncnmf_tol: 0.001\nfeature_batch_size: 2\n"
                    "masks: 8\n")
    cfg = job.build_config(cli.parse_args(["vtcd", "--config", str(conf), "--features", "values"]))
    assert (cfg.n_masks, cfg.share_prefix, cfg.cnmf_tol, cfg.feature_batch_size, cfg.feature) == \
        (8, False, 0.001, 2, "value")
    assert job.build_config(cli.parse_args(["vtcd", "--model", "m"])) == VTCDConfig()  # the config's defaults


def test_bad_setting_names_the_flag_on_the_command_line(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["vtcd", "--model", "m", "--masks", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--masks" in err[0] and "n_masks" not in err[0], err


def test_job_translates_core_field_names_into_flags() -> None:
    from precompute import vtcd as job

    assert job.cli_words("lower min_tubelet_fraction or use fewer n_segments; more n_masks (videos)") == \
        "lower --min-tubelet or use fewer --segments; more --masks (--videos)"


def test_head_flops_failure_is_a_warning_not_a_crash(result: VTCDAnalysis, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.utils.flop_counter as fc

    from core.vtcd.analysis import head_flops

    class Failing:
        def __init__(self, *a, **k):
            raise RuntimeError("cannot trace this operator")

    class Bundle:
        model = torch.nn.Linear(2, 2)

        def dummy_input(self, n: int) -> torch.Tensor:
            return torch.zeros(n, 2)

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)

    monkeypatch.setattr(fc, "FlopCounterMode", Failing)
    total, shares, why = head_flops(Bundle(), result.discovery)  # type: ignore[arg-type]
    assert total is None and shares == {} and "cannot trace" in why

    class Broken(Failing):
        def __init__(self, *a, **k):
            raise KeyError("a bug")

    monkeypatch.setattr(fc, "FlopCounterMode", Broken)
    with pytest.raises(KeyError):  # a bug is not swallowed
        head_flops(Bundle(), result.discovery)  # type: ignore[arg-type]


@pytest.mark.skipif(not all((ASSETS_MODELS / m / "model.json").is_file() for m in ("vit-appearance", "vit-motion")),
                    reason="no shipped vit models")
@pytest.mark.parametrize("name", ["vtcd.py", "rosetta.py"])
def test_examples_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", [name, str(tmp_path)])
    runpy.run_path(str(ROOT / "examples" / name), run_name="__main__")
    out = capsys.readouterr().out
    kind = "vtcd" if name == "vtcd.py" else "rosetta"
    runs = list((tmp_path / kind).iterdir())
    assert len(runs) == 1 and (runs[0] / "manifest.json").is_file() and str(runs[0]) in out


def test_a_run_without_head_importance_reads_back(result: VTCDAnalysis, tmp_path: Path) -> None:
    """--head-masks 0 writes null unit importances: the run schema accepts them (it refused the run before)."""
    no_heads = dataclasses.replace(result, heads=None)
    back = VTCDAnalysis.load(no_heads.save(tmp_path, run_id="no-heads"))
    assert back.heads is None and all(u["importance"] is None for u in back.concepts_doc["units"])


def test_hooks_take_forward_and_pre_hooks_and_always_remove_them() -> None:
    from core.vtcd.masking import hooks

    seen: list[str] = []
    lin = torch.nn.Linear(2, 2)
    with hooks([(lin, lambda *a: seen.append("post")), (lin, lambda *a: seen.append("pre"), True)]):
        lin(torch.zeros(1, 2))
    lin(torch.zeros(1, 2))
    assert seen == ["pre", "post"] and not lin._forward_hooks and not lin._forward_pre_hooks


DEMO = ROOT / "assets" / "demo"


@pytest.mark.skipif(not (DEMO / "rosetta" / "vit-motion-vs-appearance" / "rosetta.json").is_file(),
                    reason="no shipped demo runs")
def test_rosetta_over_saved_runs_gives_the_shipped_demo_tuples() -> None:
    shipped = json.loads((DEMO / "rosetta" / "vit-motion-vs-appearance" / "rosetta.json").read_text())
    runs = [DEMO / "vtcd" / r["run_id"] for r in shipped["runs"]]
    again = rosetta(runs, RosettaConfig(epsilon=shipped["epsilon"], delta=shipped["delta"],
                                        average=shipped["average"]))
    assert again.grid == shipped["grid"]
    assert [(t["concepts"], t["r"], t["videos"]) for t in again.tuples] == \
        [(t["concepts"], t["r"], t["videos"]) for t in shipped["tuples"]]


def test_other_objects_are_scored_like_the_target(tiny: dict[str, Path], result: VTCDAnalysis, tmp_path: Path) -> None:
    """An extra object (the occlusion task's occluder) gets its own IoUs against the same random crops: given the
    target's own masks under another name, every number equals the target's; the masks ship with the run."""
    small = dataclasses.replace(FAST, head_masks=0, bootstrap=0, diagnostics=False)
    target = np.zeros((3, 8, 32, 32), bool)
    target[:, :, 8:20, 4:16] = True
    out = analyse(f"ckpt:{tiny['ckpt']}", result.clips, small, attribution=False, layers=["blocks.1"],
                  ground_truth_masks={"target": target, "twin": target.copy()}, device="cpu")
    gt = out.ground_truth
    assert all(c["iou_twin"] == c["iou"] for c in gt["concepts"])
    twin = gt["others"]["twin"]
    assert twin["best"]["iou"] == gt["best"]["iou"] and twin["baseline"]["best_iou"] == gt["baseline"]["best_iou"]
    assert [r["iou"] for r in twin["layers"]] == [r["iou"] for r in gt["layers"]]
    run = out.save(tmp_path, run_id="gt")
    with np.load(run / "ground_truth.npz", allow_pickle=False) as z:
        np.testing.assert_array_equal(z["twin"], target)
    with pytest.raises(UserError, match="cannot be named 'present'"):
        analyse(f"ckpt:{tiny['ckpt']}", result.clips, small, attribution=False, layers=["blocks.1"],
                ground_truth_masks={"target": target, "present": target}, device="cpu")
    with pytest.raises(UserError, match="cannot be named 'masks'"):  # the target's array in ground_truth.npz
        analyse(f"ckpt:{tiny['ckpt']}", result.clips, small, ground_truth_masks={"target": target, "masks": target},
                device="cpu")
    with pytest.raises(UserError, match="'target' is needed"):
        analyse(f"ckpt:{tiny['ckpt']}", result.clips, small, ground_truth_masks={"occluder": target}, device="cpu")


def test_occlusion_clips_give_target_and_occluder_masks() -> None:
    """The occlusion task's masks: the occluder is a static strip and hides the target in the middle of the clip."""
    from core.models.loading import load_model
    from core.vtcd.ground_truth import synthetic_masks

    bundle, _ = load_model("r3d-motion", "cpu")  # any 16 x 64 x 64 video model: only its input size is read
    masks = synthetic_masks("occlusion", bundle, 3)
    assert set(masks) == {"target", "occluder"}
    occ, tgt = masks["occluder"], masks["target"]
    assert occ.shape == tgt.shape == (3, 16, 64, 64)
    assert (occ == occ[:, :1]).all() and occ.any(axis=(2, 3)).all()  # static, in every frame
    assert not (occ & tgt).any()  # visible pixels only
    assert not tgt[:, 7:9].any() and tgt[:, 0].any(axis=(1, 2)).all()  # hidden mid-clip, visible at the start
    assert set(synthetic_masks("motion", bundle, 2)) == {"target"}
