"""The `vtcd` and `rosetta` jobs end to end on a tiny random video transformer and 3 synthetic clips (seconds):
run layout, the kept CRIS record, resume after a kill, one-line errors, Rosetta pairing a run with its twin, and
the attribution check (positive perturbation below negative) on the shipped vit-appearance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.models.resolve import ASSETS_MODELS
from core.vtcd import importance_from_masks
from core.vtcd.importance import released_importance
from precompute import cli

FAST = ["--masks", "16", "--head-masks", "8", "--max-concepts", "4", "--kmeans-init", "2", "--cnmf-iters", "100",
        "--attribution-steps", "5", "--random-orders", "2", "--batch-size", "16", "--device", "cpu"]
VIDEOS = "synthetic:appearance:3"


def make_tiny_ckpt(folder: Path) -> Path:
    """A random ``VideoTransformer`` (2 blocks of 2 heads, 8 frames of 32x32) whose 3 classes are the first 3
    of the synthetic appearance task (so ``synthetic:appearance:3`` clips are labelled)."""
    from core.data.synthetic import APPEARANCES
    from core.models.video_zoo import VideoTransformer
    from core.models.zoo import save_checkpoint

    torch.manual_seed(0)
    kwargs = {"num_classes": 3, "frames": 8, "size": 32, "dim": 32, "depth": 2, "heads": 2, "stem": "linear",
              "patch": 8}
    model = VideoTransformer(**kwargs).eval()
    save_checkpoint(model, folder, {
        "architecture": "vit", "kwargs": kwargs, "description": "tiny random vit (tests)", "task": "appearance",
        "preprocessing": {"input": "video", "size": 32, "frames": 8, "mean": [0.45] * 3, "std": [0.225] * 3},
        "classes": list(APPEARANCES[:3]), "stages": ["blocks.0", "blocks.1"], "token_grid": list(model.grid)})
    return folder


def vtcd_args(ckpt: Path, out: Path, run_id: str, *extra: str) -> list[str]:
    return ["vtcd", "--model", f"ckpt:{ckpt}", "--videos", VIDEOS, "--out", str(out), "--run-id", run_id, *FAST,
            *extra]


@pytest.fixture(scope="module")
def torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, torch_threads) -> dict[str, Path]:
    """The tiny checkpoint and one finished run (with --ground-truth) under ``root``."""
    base = tmp_path_factory.mktemp("vtcd")
    ckpt = make_tiny_ckpt(base / "tiny-vit")
    root = base / "runs"
    assert cli.main(vtcd_args(ckpt, root, "a", "--ground-truth")) == 0
    return {"ckpt": ckpt, "root": root, "run": root / "vtcd" / "a"}


def test_run_layout(tiny: dict[str, Path]) -> None:
    run = tiny["run"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["kind"] == "vtcd"
    assert not any(name.startswith("parts/") for name in manifest["files"])
    doc = json.loads((run / "concepts.json").read_text())
    assert doc["layers"] == ["blocks.0", "blocks.1"] and doc["target"] == {"mode": "label"}
    assert [(u["layer"], u["head"]) for u in doc["units"]] == [("blocks.0", 0), ("blocks.0", 1), ("blocks.1", 0),
                                                              ("blocks.1", 1)]
    assert len(doc["videos"]) == 3 and all((run / v["file"]).is_file() for v in doc["videos"])
    concepts = doc["concepts"]
    assert len(concepts) == sum(u["n_concepts"] for u in doc["units"]) == manifest["summary"]["n_concepts"]
    assert sorted(c["rank"] for c in concepts) == list(range(1, len(concepts) + 1))
    for c in concepts:
        assert {"id", "layer", "head", "importance", "videos", "media"} <= set(c)
        assert c["id"] == f"{c['layer']}/h{c['head']}/c{c['concept']}"
        assert 1 <= len(c["media"]) <= 3 and c["media"] == [v["file"] for v in c["videos"][:3]]
        for f in c["media"]:
            assert f in manifest["files"] and (run / f).stat().st_size < 60_000  # small H.264 clips
        weights = [v["weight"] for v in c["videos"]]
        assert weights == sorted(weights, reverse=True)
    # supports: every voxel of every video belongs to at most one concept of a head
    supports = np.load(run / "supports.npz")
    for u in doc["units"]:
        cmap = supports[f"cmap_{u['index']}"]
        assert cmap.shape[0] == 3 and cmap.max() == u["n_concepts"] - 1


def test_the_whole_mask_by_metric_record_is_kept(tiny: dict[str, Path]) -> None:
    run = tiny["run"]
    doc = json.loads((run / "concepts.json").read_text())
    cris = np.load(run / "cris.npz")
    n = int(cris["concept_n_units"])
    removed = np.unpackbits(cris["concept_removed_bits"], axis=-1, count=n).astype(bool)
    assert removed.shape == (3, 16, len(doc["concepts"])) and cris["concept_values"].shape == (3, 16)
    assert (removed.sum(-1) == round(0.5 * n)).all()  # each mask removes rho of all concepts of all heads at once
    _, mean = importance_from_masks(removed, cris["concept_values"], higher_is_better=False)  # metric: loss
    np.testing.assert_allclose(mean, [c["importance"] for c in doc["concepts"]])
    # the released estimator and the bootstrap interval, for concepts and heads
    released = released_importance(removed, cris["concept_values"], higher_is_better=False)
    np.testing.assert_allclose(cris["concept_importance_released"], released)
    np.testing.assert_allclose([c["importance_released"] for c in doc["concepts"]], released)
    assert doc["ci_level"] == 0.95 and doc["bootstrap"] == 200
    for c, lo, hi in zip(doc["concepts"], cris["concept_ci_low"], cris["concept_ci_high"], strict=True):
        assert c["importance_ci"] == pytest.approx([lo, hi]) and lo <= c["importance"] <= hi
    assert all(len(u["importance_ci"]) == 2 for u in doc["units"]) and "head_ci_low" in cris
    assert doc["rank_agreement"] is None or -1.0 <= doc["rank_agreement"] <= 1.0
    heads = np.unpackbits(cris["head_removed_bits"], axis=-1, count=int(cris["head_n_units"]))
    assert heads.shape == (3, 8, 4)
    assert [u["rank"] for u in doc["units"]] and sorted(u["rank"] for u in doc["units"]) == [1, 2, 3, 4]


def test_attention_diagnostics_file(tiny: dict[str, Path]) -> None:
    diag = json.loads((tiny["run"] / "diagnostics.json").read_text())
    assert [b["layer"] for b in diag["blocks"]] == ["blocks.0", "blocks.1"]
    assert diag["n_videos"] == 3 and diag["metric"] == "probability"
    for b in diag["blocks"]:
        assert 0.0 < b["entropy"] <= 1.0 and len(b["entropy_heads"]) == 2
        assert b["attention_module"] == f"{b['layer']}.attn"
        assert b["keys_removed_abs"] is not None and b["branch_abs"] >= 0.0


def test_attribution_and_pruning_files(tiny: dict[str, Path]) -> None:
    attr = json.loads((tiny["run"] / "attribution.json").read_text())
    assert attr["fractions"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    for key in ("positive", "negative", "random"):
        assert len(attr[key]) == 5
        assert attr[key][0] == pytest.approx(attr["baseline"])  # nothing removed: the unmasked metric
    assert attr["positive"][-1] == pytest.approx(attr["negative"][-1])  # everything removed either way
    assert [s["scope"] for s in attr["scopes"]] == ["all", "blocks.0", "blocks.1"]
    assert set(attr["occlusion"]) == {"positive", "negative"}
    pruning = attr["head_pruning"]
    assert pruning["n_heads"] == 4 and len(pruning["pruned"]) == 5
    assert pruning["gflops"][0] == pytest.approx(pruning["gflops_full"])
    assert pruning["gflops"][-1] < pruning["gflops"][0]


def test_ground_truth_against_random_crops(tiny: dict[str, Path]) -> None:
    gt = json.loads((tiny["run"] / "ground_truth.json").read_text())
    assert gt["n_videos"] == 3 and 0.0 <= gt["best"]["iou"] <= 1.0 and 0.0 <= gt["baseline"]["best_iou"] <= 1.0
    assert gt["best"]["iou"] == max(c["iou"] for c in gt["concepts"])
    assert [r["layer"] for r in gt["layers"]] == ["blocks.0", "blocks.1"]
    assert len(gt["baseline"]["units"]) == 4
    # the object masks ship with the run, at the model's input size, for the players' outline
    with np.load(tiny["run"] / "ground_truth.npz", allow_pickle=False) as z:
        masks = z["masks"]
    assert masks.dtype == bool and masks.shape == (3, 8, 32, 32) and masks.any(axis=(1, 2, 3)).all()


def test_resume_after_a_kill_recomputes_nothing_finished(tiny: dict[str, Path], tmp_path: Path, monkeypatch,
                                                         capsys) -> None:
    """Killed during attribution, the rerun resumes through core's store: no layer discovered again, no
    masked CRIS pass run again, and the same numbers."""
    import core.vtcd.analysis as analysis
    import core.vtcd.importance as importance
    import core.vtcd.pipeline as pipeline

    args = vtcd_args(tiny["ckpt"], tmp_path, "a", "--ground-truth")
    real = analysis.attribution_curves

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(analysis, "attribution_curves", killed)
    assert cli.main(args) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    partial = [p for p in (tmp_path / "vtcd").iterdir() if p.name.startswith(".partial-")]
    assert len(partial) == 1 and (partial[0] / "parts" / "discover-01.npz").is_file()
    assert (partial[0] / "parts" / "cris-concepts" / "video-0002.npz").is_file()

    calls: dict[str, int] = {}

    def counted(name: str, fn):
        def wrapper(*a, **k):
            calls[name] = calls.get(name, 0) + 1
            return fn(*a, **k)
        return wrapper

    monkeypatch.setattr(analysis, "attribution_curves", counted("attribution_curves", real))
    for module, name in ((pipeline, "discover"), (importance, "masked_metrics"), (importance, "run_masks"),
                         (analysis, "attention_diagnostics"), (analysis, "occlusion_importance")):
        monkeypatch.setattr(module, name, counted(name, getattr(module, name)))
    assert cli.main(args) == 0
    assert calls.get("attribution_curves", 0) >= 1  # the unfinished stage ran
    assert {k: v for k, v in calls.items() if k != "attribution_curves"} == {}, calls
    resumed = json.loads((tmp_path / "vtcd" / "a" / "concepts.json").read_text())
    reference = json.loads((tiny["run"] / "concepts.json").read_text())
    assert [c["importance"] for c in resumed["concepts"]] == [c["importance"] for c in reference["concepts"]]
    assert json.loads((tmp_path / "vtcd" / "a" / "attribution.json").read_text()) == \
        json.loads((tiny["run"] / "attribution.json").read_text())


@pytest.mark.parametrize("extra, message", [
    (["--heads", "7"], "has 2 heads"),
    (["--heads", "x"], "head indices"),
    (["--target-class", "zebra"], "not a class"),
    (["--ground-truth", "--videos", "demo"], "synthetic"),
    (["--masks", "1"], "--masks"),
    (["--rho", "1.5"], "rho"),
    (["--features", "pixels"], "invalid choice"),
    (["--target", "label", "--videos", "synthetic:motion:3"], "no label"),
    (["--layers", "blocks.9"], "blocks.9"),
])
def test_bad_input_is_one_line(tiny: dict[str, Path], tmp_path: Path, capsys, extra: list[str],
                               message: str) -> None:
    assert cli.main(vtcd_args(tiny["ckpt"], tmp_path, "bad", *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_rosetta_pairs_a_run_with_its_twin(tiny: dict[str, Path], capsys) -> None:
    root = tiny["root"]
    assert cli.main(vtcd_args(tiny["ckpt"], root, "b")) == 0  # same model, settings and videos
    assert cli.main(["rosetta", "--runs", "a", "b", "--out", str(root), "--run-id", "twins"]) == 0
    run = root / "rosetta" / "twins"
    doc = json.loads((run / "rosetta.json").read_text())
    cand_a, cand_b = (r["candidates"] for r in doc["runs"])
    assert cand_a == cand_b and len(cand_a) >= 1
    assert [r["label"] for r in doc["runs"]] == ["tiny-vit", "tiny-vit (b)"]
    selfpairs = {t["concepts"][0]: t for t in doc["tuples"] if t["concepts"][0] == t["concepts"][1]}
    assert set(selfpairs) == set(cand_a) and doc["average"] == "all"
    concepts = {c["id"]: c for c in json.loads((root / "vtcd" / "a" / "concepts.json").read_text())["concepts"]}
    n_videos = len(doc["videos"])
    for cid, t in selfpairs.items():  # a video where the concept is absent counts 0, as the released code
        assert t["r"] == pytest.approx(concepts[cid]["n_videos"] / n_videos) and t["d"] == 2
    assert any(t["r"] < 1.0 for t in selfpairs.values())
    assert cli.main(["rosetta", "--runs", "a", "b", "--out", str(root), "--run-id", "twins-present",
                     "--average", "present"]) == 0
    present = json.loads((root / "rosetta" / "twins-present" / "rosetta.json").read_text())
    for t in present["tuples"]:
        if t["concepts"][0] == t["concepts"][1]:
            assert t["r"] == pytest.approx(1.0)
    for t in doc["tuples"]:
        assert t["r"] > doc["delta"]
        for row in t["media"]:
            assert all((run / f).is_file() for f in row) and len(row) == 2
    assert any(t["media"] for t in doc["tuples"])
    # errors: one run, the same run twice, runs on other videos
    capsys.readouterr()
    assert cli.main(["rosetta", "--runs", "a", "--out", str(root)]) == 2
    assert cli.main(["rosetta", "--runs", "a", "a", "--out", str(root)]) == 2
    assert cli.main(vtcd_args(tiny["ckpt"], root, "other", "--videos", "synthetic:appearance:4",
                              "--no-attribution")) == 0
    assert cli.main(["rosetta", "--runs", "a", "other", "--out", str(root)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 3 and "at least two" in err[0] and "same run twice" in err[1] and "same videos" in err[2]


@pytest.mark.skipif(not (ASSETS_MODELS / "vit-appearance" / "model.json").is_file(), reason="no vit-appearance")
def test_positive_perturbation_falls_below_negative_on_a_trained_model(tmp_path: Path, torch_threads) -> None:
    args = ["vtcd", "--model", "vit-appearance", "--videos", "synthetic:appearance:4", "--layers", "blocks.0",
            "blocks.1", "--out", str(tmp_path), "--run-id", "app", "--masks", "48", "--head-masks", "0",
            "--max-concepts", "5",
            "--kmeans-init", "2", "--cnmf-iters", "200", "--attribution-steps", "5", "--random-orders", "2",
            "--batch-size", "48", "--media-videos", "1", "--media-concepts", "2", "--device", "cpu"]
    # Early blocks: masking the keys of the last block alone barely moves this model's output
    # (AUC 0.828 positive vs 0.830 negative when measured), the early blocks carry the concepts.
    assert cli.main(args) == 0
    attr = json.loads((tmp_path / "vtcd" / "app" / "attribution.json").read_text())
    auc = attr["auc"]
    assert auc["positive"] < auc["random"] < auc["negative"]
    assert auc["positive"] < auc["negative"] - 0.05
    assert attr["head_pruning"] is None
    doc = json.loads((tmp_path / "vtcd" / "app" / "concepts.json").read_text())
    assert sum(bool(c["media"]) for c in doc["concepts"]) == 2  # --media-concepts: the 2 most important only
