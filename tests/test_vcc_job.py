"""The `vcc` and `vcc-debug` jobs end to end on a tiny random-init CNN (a py: spec) and synthetic PNGs:
run layout, graph JSON round trip, fidelity and metrics files, resume after a kill between classes,
one-line errors for bad input, and the failure debugger on one image and on a run's mistakes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.artifacts import list_runs, open_run
from core.vcc import VCCGraph
from core.vcc.debug import graph_from_json
from precompute import cli
from precompute import vcc as vcc_job
from tests.models import MODEL_PY

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["red", "green", "blue", "yellow", "purple"]
COLORS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200), "yellow": (220, 220, 30)}


# Tiny settings: seconds per class.
TINY = ["--layers", "block1", "block2", "--grid", "8", "--n-concepts", "3", "--prune", "A=0", "K=2",
        "--n-random-sets", "3", "--random-set-size", "3", "--suppression-scales", "0", "2",
        "--n-random-directions", "2", "--kmeans-n-init", "2", "--device", "cpu"]


def blocky(rng: np.random.Generator, color: tuple[int, int, int]) -> np.ndarray:
    """A 30x40 image: a random background with three rectangles near ``color``."""
    im = np.empty((30, 40, 3), np.uint8)
    im[:] = rng.integers(0, 256, 3)
    for _ in range(3):
        y, x = rng.integers(0, 24), rng.integers(0, 34)
        im[y:y + rng.integers(6, 15), x:x + rng.integers(6, 20)] = np.clip(
            np.array(color) + rng.integers(-30, 30, 3), 0, 255)
    return im


def make_inputs(root: Path) -> dict[str, Any]:
    """The tiny model's file, a folder with a sub-folder per class, and a folder of random images."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "tiny_model.py").write_text(MODEL_PY)
    rng = np.random.default_rng(0)
    for c in ("red", "green", "blue"):
        d = root / "images" / c
        d.mkdir(parents=True)
        for k in range(5):
            Image.fromarray(blocky(rng, COLORS[c])).save(d / f"{c}{k}.png")
    d = root / "random" / "yellow"
    d.mkdir(parents=True)
    for k in range(8):
        Image.fromarray(blocky(rng, COLORS["yellow"])).save(d / f"y{k}.png")
    return {"model": f"py:{root / 'tiny_model.py'}:build", "images": root / "images", "random": root / "random"}


def vcc_args(inp: dict[str, Any], out: Path, *extra: str) -> list[str]:
    return ["vcc", "--model", inp["model"], "--images", str(inp["images"]), "--random", str(inp["random"]),
            "--out", str(out), *TINY, *extra]


def run_main(argv: list[str], capsys: pytest.CaptureFixture | None = None) -> tuple[int, str, str]:
    rc = cli.main(argv)
    if capsys is None:
        return rc, "", ""
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def make_runs(root: Path) -> dict[str, Any]:
    """Inputs, a two-class vcc run (red, green) and a vcc-debug run of its misclassified images."""
    inp = make_inputs(root / "inputs")
    out = root / "runs"
    assert cli.main(vcc_args(inp, out, "--classes", "red", "green", "--run-id", "two")) == 0
    assert cli.main(["vcc-debug", "--model", inp["model"], "--runs", "two", "--out", str(out), "--device", "cpu",
                     "--run-id", "mistakes"]) == 0
    return {**inp, "out": out, "vcc": out / "vcc" / "two", "debug": out / "vcc-debug" / "mistakes"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_runs(tmp_path_factory.mktemp("vcc"))


def one_line_error(rc: int, err: str, *words: str) -> str:
    assert rc == 2, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------------------------
# vcc


def test_vcc_run_layout_and_files(runs: dict[str, Any]) -> None:
    run = open_run(runs["vcc"], verify=True)
    assert run.kind == "vcc" and run.manifest["config"]["layers"] == ["block1", "block2"]
    assert run.manifest["config"]["vcc"]["grid"] == 8 and run.manifest["config"]["vcc"]["prune"]["K"] == 2.0
    assert run.summary["n_classes"] == 2 and run.summary["classes"] == ["red", "green"]
    classes = run.load_json("classes.json")
    assert [c["slug"] for c in classes] == ["0-red", "1-green"]
    for c in classes:
        base = f"classes/{c['slug']}"
        assert run.load_json(f"{base}/class.json") == c
        graph = run.load_json(f"{base}/graph.json")
        assert graph["layers"] == ["block1", "block2"]
        concepts = [n for n in graph["nodes"] if n["kind"] == "concept"]
        assert concepts and sum(n["kind"] == "class" for n in graph["nodes"]) == 1
        for n in graph["nodes"]:
            assert {"id", "layer", "size", "exemplar_files"} <= set(n)
            assert all(run.has(f) for f in n["exemplar_files"])
            assert len(n["exemplar_files"]) == (len(n["exemplars"]) if n["kind"] == "concept" else 0)
        assert graph["edges"] and any(e["target"] == f"class:{c['class_index']}" for e in graph["edges"])
        for e in graph["edges"]:
            assert {"source", "target", "weight", "p_value", "significant", "values", "random_values"} <= set(e)
            assert len(e["values"]) == len(e["random_values"]) == 3
        metrics = run.load_json(f"{base}/metrics.json")
        assert [m["layer"] for m in metrics] == ["block1", "block2", "class"]
        assert {"n_concepts", "branching_factor", "mean_edge_weight", "edge_weight_variance"} <= set(metrics[0])
        assert all(m["grouped_by"] == "source" for m in metrics) and metrics[-1]["weight_edges"] == 0
        assert set(graph["meta"]["pruned_by_commonality"]) == {"block1", "block2"}
        fid = run.load_json(f"{base}/fidelity.json")
        assert fid["enabled"] and fid["eps"] == [0.0, 2.0]
        for layer in graph["layers"]:
            d = fid["layers"][layer]
            assert {"eps", "concept", "random"} <= set(d)
            assert np.asarray(d["concept"]).shape == (len([n for n in concepts if n["layer"] == layer]), 2)
            assert np.asarray(d["random"]).shape == (2, 2)
            assert len(fid["concept"][layer]) == len(fid["random"][layer]) == 2
            assert set(d["auc"]) == {"concept", "random", "matched"} and d["falls_faster"] == (
                d["auc"]["concept"] is not None and d["auc"]["concept"] < d["auc"]["random"])
            has = bool(d["concept_ids"])
            assert np.asarray(d["matched"]).shape == ((2, 2) if has else (0,))
            assert (d["auc"]["matched"] is not None) == has and (d["falls_faster_matched"] is not None) == has
        assert fid["matched_kind"] == "segments" and set(fid["matched"]) == set(graph["layers"])
        assert {"aps", "ls", "correlation"} <= set(fid)
        arrays = run.load_npz(f"{base}/segments.npz")
        assert arrays["segment_masks"].shape[1:] == (8, 8) and "centroids.1" in arrays
        images = run.load_json(f"{base}/images.json")
        assert len(images) == c["n_images"] == 5
        for im in images:  # every discovery image's prediction is recorded
            assert run.has(im["file"]) and len(im["top"]) == 5 and im["correct"] == (im["predicted"] ==
                                                                                     c["class_index"])


def test_vcc_degenerate_results_are_warnings_in_the_manifest(runs: dict[str, Any]) -> None:
    """5 images a class (of the 50 asked for) and 8 random images for 3 sets of 3: both are recorded,
    once per code, naming every class, beside each class's own list in class.json."""
    run = open_run(runs["vcc"])
    got = {(w["code"], w["layer"]): w for w in run.warnings}
    few = got[("vcc.few_images", None)]
    assert few["message"].startswith("class red: 5 images of the class") and "; class green: 5 images" in few[
        "message"]
    assert few["setting"] == "--n-images" and few["figure"] == "graph"
    assert "--random" in got[("vcc.random_overlap", None)]["message"]
    for c in run.load_json("classes.json"):
        assert {w["code"] for w in c["warnings"]} >= {"vcc.few_images", "vcc.random_overlap"}


def test_vcc_empty_layers_are_printed_and_recorded(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    inp = make_inputs(tmp_path / "inputs")
    rc, _, err = run_main(vcc_args(inp, tmp_path / "runs", "--target-class", "red", "--run-id", "empty",
                                   "--prune", "A=1000", "K=1000", "--no-fidelity"), capsys)
    assert rc == 0, err
    assert "warning [block2]: class red: block2 has no concept" in err
    run = open_run(tmp_path / "runs" / "vcc" / "empty")
    empty = {w["layer"] for w in run.warnings if w["code"] == "vcc.empty_layer"}
    assert empty == {"block1", "block2"}


def test_vcc_flags_reach_every_new_setting() -> None:
    args = cli.parse_args(["vcc", "--model", "efficientnet_lite0", "--cav-method", "logistic", "--no-cav-balance",
                           "--cav-train-fraction", "1", "--no-drop-prefix-tokens", "--commonality", "high_share=0.4",
                           "many_images=0.6", "--metrics-group-by", "target", "--matched-random", "nonnegative"])
    cfg = vcc_job.config_from_args(args)
    assert (cfg.cav_method, cfg.cav_balance, cfg.cav_train_fraction, cfg.drop_prefix_tokens) == ("logistic", False,
                                                                                                  1.0, False)
    assert cfg.commonality.high_share == 0.4 and cfg.commonality.many_images == 0.6
    assert cfg.commonality.mild_share == 0.25
    assert (cfg.metrics_group_by, cfg.matched_random) == ("target", "nonnegative")
    off = vcc_job.config_from_args(cli.parse_args(["vcc", "--model", "m", "--commonality", "off"]))
    assert off.commonality is None
    default = vcc_job.config_from_args(cli.parse_args(["vcc", "--model", "m"]))
    assert default == vcc_job.VCCConfig()


@pytest.mark.parametrize(("flags", "words"), [
    (["--cav-train-fraction", "0"], ["--cav-train-fraction"]),
    (["--commonality", "share=1"], ["--commonality", "share"]),
    (["--commonality", "high_share=2"], ["high_share"])])
def test_bad_new_vcc_flags_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str],
                                               words: list[str]) -> None:
    inp = make_inputs(tmp_path / "in")
    rc, _, err = run_main(vcc_args(inp, tmp_path / "out", "--classes", "red", *flags), capsys)
    one_line_error(rc, err, *words)


def test_every_json_file_is_strict_json(runs: dict[str, Any]) -> None:
    """No NaN or Infinity tokens (browsers and other tools reject them): missing values are null."""
    def refuse(token: str) -> None:
        raise AssertionError(f"non-JSON constant {token}")

    files = [p for root in (runs["vcc"], runs["debug"]) for p in root.rglob("*.json")]
    assert len(files) > 10
    for p in files:
        json.loads(p.read_text(), parse_constant=refuse)


def test_graph_json_round_trips(runs: dict[str, Any]) -> None:
    run = open_run(runs["vcc"])
    d = run.load_json("classes/0-red/graph.json")
    graph = graph_from_json(d)
    assert VCCGraph.from_json(graph.to_json()) == graph
    again = graph.to_dict()
    stripped = {**d, "nodes": [{k: v for k, v in n.items() if k != "exemplar_files"} for n in d["nodes"]]}
    assert json.loads(json.dumps(again)) == stripped


def test_resume_after_a_kill_between_classes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    inp = make_inputs(tmp_path / "inputs")
    out = tmp_path / "runs"
    from core.vcc import analysis

    real = analysis.build_vcc  # resume is core's: core.vcc.analyse asks the run writer before each class
    calls: list[int] = []

    def killed_at_second_class(bundle, layers, images, random_images, class_index, *a, **k):
        calls.append(class_index)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(bundle, layers, images, random_images, class_index, *a, **k)

    monkeypatch.setattr(analysis, "build_vcc", killed_at_second_class)
    argv = vcc_args(inp, out, "--classes", "red", "blue", "--run-id", "resumed")
    rc, _, err = run_main(argv, capsys)
    assert rc == 130 and "rerun the same command" in err
    [entry] = list_runs(out)
    assert entry.partial and (entry.path / "classes" / "0-red" / "class.json").is_file()
    assert not (entry.path / "classes" / "2-blue" / "class.json").exists()
    rc, stdout, _ = run_main(argv, capsys)
    assert rc == 0
    assert calls == [0, 2, 2]  # red is not computed again
    run = open_run(stdout.strip().splitlines()[-1], verify=True)
    assert [c["class_name"] for c in run.load_json("classes.json")] == ["red", "blue"]


def test_single_class_from_a_flat_folder_with_augmentation(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    inp = make_inputs(tmp_path / "inputs")
    rc, stdout, err = run_main(["vcc", "--model", inp["model"], "--images", str(inp["images"] / "blue"),
                                "--target-class", "blue", "--augment", "7", "--random", str(inp["random"]),
                                "--out", str(tmp_path / "runs"), *TINY, "--no-fidelity", "--no-significance"],
                               capsys)
    assert rc == 0, err
    assert "crops and flips" in err  # said when it happens
    run = open_run(stdout.strip().splitlines()[-1])
    [c] = run.load_json("classes.json")
    assert c["slug"] == "2-blue" and c["n_images"] == 7 and c["n_photos"] == 5 and c["n_augmented"] == 2
    assert run.manifest["data"]["augmentation"].startswith("random crops")
    assert run.manifest["data"]["classes"][0]["n_augmented"] == 2
    images = run.load_json("classes/2-blue/images.json")
    aug = [im for im in images if im["augment"]]
    assert len(aug) == 2 and all("~aug" in im["id"] for im in aug)
    again = vcc_job.load_origin(aug[0]["origin"], aug[0]["augment"])  # augmented copies can be remade
    assert list(again.shape[:2]) == aug[0]["size"]
    assert run.load_json("classes/2-blue/fidelity.json") == {"enabled": False, "scales": [0.0, 2.0]}
    assert all(e["significant"] for e in run.load_json("classes/2-blue/graph.json")["edges"])


def test_a_class_without_photos_from_the_models_predictions(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    inp = make_inputs(tmp_path / "inputs")
    shutil.rmtree(inp["images"] / "red")  # red now has no labelled photo; the tiny model predicts red a lot
    rc, stdout, err = run_main(vcc_args(inp, tmp_path / "out", "--classes", "red", "--from-predictions", "3"),
                               capsys)
    assert rc == 0, err
    assert "crops the model predicts as red" in err
    run = open_run(stdout.strip().splitlines()[-1], verify=True)
    [entry] = run.load_json("classes.json")
    assert entry["selected_by"] == "prediction" and entry["n_photos"] == 0 and entry["n_images"] > 0
    images = run.load_json(f"classes/{entry['slug']}/images.json")
    assert all(im["predicted"] == 0 and im["augment"] is not None for im in images)  # crops predicted as red
    assert {im["augment"]["of"].split("__")[0] for im in images} <= {"green", "blue"}
    assert run.manifest["data"]["classes"][0]["selected_by"] == "prediction" and run.manifest["data"]["selection"]
    # a reloaded crop is the image the VCC was built from
    first = images[0]
    assert list(vcc_job.load_origin(first["origin"], first["augment"]).shape[:2]) == first["size"]
    rc, _, err = run_main(vcc_args(inp, tmp_path / "out2", "--classes", "purple", "--from-predictions", "2"),
                          capsys)
    one_line_error(rc, err, "predicted as purple")


def test_unknown_class_exits_2_with_one_line(tmp_path: Path) -> None:
    inp = make_inputs(tmp_path / "inputs")
    proc = subprocess.run([sys.executable, "-m", "precompute", *vcc_args(inp, tmp_path / "runs", "--target-class",
                                                                          "gren")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    one_line_error(proc.returncode, proc.stderr, "unknown class 'gren'", "'green'")
    assert not list_runs(tmp_path / "runs")


def test_bad_inputs_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    inp = make_inputs(tmp_path / "inputs")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "runs"
    rc, _, err = run_main(["vcc", "--model", inp["model"], "--images", str(tmp_path / "empty"), "--target-class",
                           "red", "--out", str(out), *TINY], capsys)
    one_line_error(rc, err, "no readable image", "empty")
    rc, _, err = run_main(vcc_args(inp, out, "--classes", "yellow"), capsys)  # no images of that class
    one_line_error(rc, err, "no images of class 3 (yellow)")
    rc, _, err = run_main(vcc_args(inp, out, "--target-class", "7"), capsys)
    one_line_error(rc, err, "out of range")
    rc, _, err = run_main(vcc_args(inp, out), capsys)  # three classes, none picked
    one_line_error(rc, err, "--num-classes")
    rc, _, err = run_main(vcc_args(inp, out, "--target-class", "red", "--classes", "green"), capsys)
    one_line_error(rc, err, "--target-class", "--classes")
    rc, _, err = run_main(vcc_args(inp, out, "--target-class", "red", "--prune", "Z=1"), capsys)
    one_line_error(rc, err, "--prune", "'Z'")
    rc, _, err = run_main(vcc_args(inp, out, "--target-class", "red", "--split-range", "1", "3"), capsys)
    one_line_error(rc, err, "--split-range")
    assert not list_runs(out)


# ----------------------------------------------------------------------------------------------
# vcc-debug


def test_vcc_debug_on_the_runs_mistakes(runs: dict[str, Any]) -> None:
    run = open_run(runs["debug"], verify=True)
    debug = run.load_json("debug.json")
    vcc = open_run(runs["vcc"])
    wrong = [im for c in vcc.load_json("classes.json") for im in
             vcc.load_json(f"classes/{c['slug']}/images.json") if im["correct"] is False]
    assert wrong and len(debug["images"]) == len(wrong) == run.summary["n_images"]
    for rec in debug["images"]:
        assert rec["correct"] is False and rec["vcc_true"] in debug["vccs"]
        has_pred = rec["predicted"] in (0, 1)  # red and green have VCCs
        assert rec["missing_predicted_vcc"] is not has_pred
        assert (rec["vcc_predicted"] in debug["vccs"]) if has_pred else rec["vcc_predicted"] is None
        arrays = run.load_npz(rec["segments"])
        n = len(arrays["masks"])
        assert n == rec["n_segments"] and set(np.unique(arrays["side"])) <= {0, 1}
        assert [r["layer"] for r in rec["layers"]] == ["block1", "block2"]
        for li, row in enumerate(rec["layers"]):
            ids = arrays["layer"] == li
            assert row["n_segments"] == ids.sum() and row["n_true"] == (arrays["side"][ids] == 0).sum()
            assert row["share_true"] + row["share_predicted"] == pytest.approx(1.0)
        assert sum(sum(v.values()) for v in rec["activated"].values()) == n
    for v in debug["vccs"].values():
        graph = run.load_json(v["graph"])
        assert all(run.has(f) for n in graph["nodes"] for f in n["exemplar_files"])


def test_vcc_debug_resumes_after_a_kill(runs: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    import importlib

    debug_module = importlib.import_module("core.vcc.debug")  # the module (core.vcc.debug is the entry point)
    real = debug_module.analyse
    calls: list[int] = []

    def killed_at_second_image(bundle, image, *a, **k):
        calls.append(int(image.sum()))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(bundle, image, *a, **k)

    monkeypatch.setattr(debug_module, "analyse", killed_at_second_image)
    argv = ["vcc-debug", "--model", runs["model"], "--image", str(runs["images"] / "red"), "--true-class", "red",
            "--runs", str(runs["vcc"]), "--out", str(tmp_path), "--device", "cpu", "--run-id", "resumed"]
    rc, _, err = run_main(argv, capsys)
    assert rc == 130 and "rerun the same command" in err
    rc, stdout, err = run_main(argv, capsys)
    assert rc == 0, err
    assert len(calls) == 2 + 4 and calls[2] == calls[1] and calls[0] not in calls[2:]  # image 0 is not redone
    run = open_run(stdout.strip().splitlines()[-1], verify=True)
    assert [r["n"] for r in run.load_json("debug.json")["images"]] == [0, 1, 2, 3, 4]
    assert not run.has("parts/000.json")


def test_vcc_debug_on_one_image(runs: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    image = runs["images"] / "green" / "green0.png"
    rc, stdout, err = run_main(["vcc-debug", "--model", runs["model"], "--image", str(image), "--true-class",
                                "green", "--runs", str(runs["vcc"]), "--out", str(tmp_path), "--device", "cpu"],
                               capsys)
    assert rc == 0, err
    run = open_run(stdout.strip().splitlines()[-1], verify=True)
    [rec] = run.load_json("debug.json")["images"]
    assert rec["true_name"] == "green" and rec["source"] == str(image.resolve())
    assert run.has(rec["file"]) and run.has(rec["segments"])
    assert rec["vcc_predicted"] is None if rec["correct"] else rec["predicted_name"] == "red"
    for side in ("true", "predicted"):
        for p in rec["paths"][side]:
            assert p["nodes"][-1].startswith("class:") and len(p["weights"]) == len(p["nodes"]) - 1
            assert p["strength"] == pytest.approx(np.mean(p["weights"]))


def test_vcc_debug_bad_inputs(runs: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    image = str(runs["images"] / "green" / "green0.png")
    base = ["vcc-debug", "--model", runs["model"], "--out", str(tmp_path), "--device", "cpu"]
    rc, _, err = run_main([*base, "--image", image, "--true-class", "blue", "--runs", str(runs["vcc"])], capsys)
    one_line_error(rc, err, "no VCC of the true class 2")
    rc, _, err = run_main([*base, "--image", image, "--true-class", "green", "--runs", "nope"], capsys)
    one_line_error(rc, err, "--runs nope")
    rc, _, err = run_main([*base, "--image", image, "--true-class", "green"], capsys)
    one_line_error(rc, err, "--runs is required")


def test_vcc_debug_without_the_predicted_class_vcc(runs: dict[str, Any], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    vcc = open_run(runs["vcc"])
    wrong = [(c["class_name"], im) for c in vcc.load_json("classes.json")
             for im in vcc.load_json(f"classes/{c['slug']}/images.json") if im["correct"] is False]
    if not wrong:
        pytest.skip("the random-init model gets every image right")
    true_name, im = wrong[0]
    out = tmp_path / "runs"
    assert cli.main(vcc_args(runs, out, "--target-class", true_name, "--run-id", "alone")) == 0
    capsys.readouterr()
    rc, stdout, err = run_main(["vcc-debug", "--model", runs["model"], "--image", im["origin"]["file"],
                                "--true-class", true_name, "--runs", "alone", "--out", str(out), "--device", "cpu"],
                               capsys)
    assert rc == 0, err
    assert "without a VCC" in err
    run = open_run(stdout.strip().splitlines()[-1])
    [rec] = run.load_json("debug.json")["images"]
    assert rec["missing_predicted_vcc"] and rec["vcc_predicted"] is None and rec["share_true"] == 1.0
    assert set(np.unique(run.load_npz(rec["segments"])["side"])) == {0}
