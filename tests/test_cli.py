"""The precompute CLI: listing commands, a full predict run, resume, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.artifacts import list_runs, open_run
from precompute import cli, predict

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "precompute", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    from core.data.images import demo_images

    for item in demo_images(["chelsea", "coffee", "camera"]):
        cls = {"chelsea": "Egyptian cat", "coffee": "espresso", "camera": "tripod"}[item.id]
        (tmp_path / "photos" / cls).mkdir(parents=True)
        Image.fromarray(item.image).save(tmp_path / "photos" / cls / f"{item.id}.jpg")
    return tmp_path / "photos"


def test_models_lists_builtins():
    proc = run_cli("models")
    assert proc.returncode == 0
    first = [line.split()[0] for line in proc.stdout.splitlines()]
    assert first[:3] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def test_layers_lists_efficientnet_layers():
    proc = run_cli("layers", "--model", "efficientnet_lite0")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[-3] if line.startswith("*") else line.split()[0]: line
            for line in proc.stdout.splitlines() if not line.startswith("#")}
    assert "1x16x112x112" in rows["blocks.0"] and rows["blocks.0"].startswith("*")
    assert "Conv2d" in rows["blocks.0.0.conv_dw"] and "1x1000" in rows["classifier"]
    assert len(rows) > 200


def test_missing_file_exits_2_with_one_line(tmp_path):
    missing = tmp_path / "nope.pth"
    proc = run_cli("layers", "--model", f"torchvision:resnet18@{missing}")
    assert_one_line_error(proc, "not found", str(missing))
    proc = run_cli("predict", "--model", "efficientnet_lite0", "--images", str(tmp_path / "none"),
                   "--out", str(tmp_path / "out"))
    assert_one_line_error(proc, "none")


def test_unknown_layer_exits_2_with_one_line(tmp_path):
    proc = run_cli("predict", "--model", "efficientnet_lite0", "--layers", "blocks.0", "blocks.99",
                   "--out", str(tmp_path))
    line = assert_one_line_error(proc, "blocks.99", "Valid layers", "conv_head")
    assert "Did you mean" in line
    assert not list_runs(tmp_path)  # the layer was checked before any run was started


def test_bad_usage_and_config_exit_2(tmp_path):
    assert_one_line_error(run_cli("predict"), "--model")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: efficientnet_lite0\nbogus_key: 1\n")
    assert_one_line_error(run_cli("predict", "--config", str(cfg)), "bogus_key")
    assert_one_line_error(run_cli("predict", "--model", "efficientnet_lite0", "--batch-size", "0"), "batch-size")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_exits_2(tmp_path):
    proc = run_cli("predict", "--model", "efficientnet_lite0", "--device", "cuda", "--out", str(tmp_path))
    assert_one_line_error(proc, "no CUDA GPU")


def test_config_values_and_flags_merge(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model": "efficientnet_lite0", "layers": ["blocks.1", "blocks.2"],
                               "batch-size": 4}))
    args = cli.parse_args(["predict", "--config", str(cfg), "--batch-size", "2"])
    assert args.model == "efficientnet_lite0" and args.layers == ["blocks.1", "blocks.2"]
    assert args.batch_size == 2  # the command line wins over the file


def test_predict_on_a_labelled_folder_writes_a_run(tmp_path, photo_folder):
    out = tmp_path / "out"
    proc = run_cli("predict", "--model", "efficientnet_lite0", "--images", str(photo_folder),
                   "--layers", "blocks.2,conv_head", "--out", str(out), "--batch-size", "2")
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip().splitlines()[-1])
    run = open_run(path, verify=True)
    preds = {r["id"]: r for r in run.load_json("predictions.json")["images"]}
    assert preds["Egyptian cat__chelsea"]["label"] == 285 and preds["Egyptian cat__chelsea"]["correct"]
    assert preds["espresso__coffee"]["predicted_name"] == "espresso"
    feats = run.load_npz("features.npz")
    assert feats["blocks.2"].shape == (3, 40) and feats["conv_head"].shape == (3, 1280)
    assert feats["logits"].shape == (3, 1000)
    assert run.load_json("layers.json") == [{"layer": "blocks.2", "shape": [40, 28, 28]},
                                            {"layer": "conv_head", "shape": [1280, 7, 7]}]
    assert run.summary["n_images"] == 3 and run.summary["n_labelled"] == 3
    assert not any(n.startswith("parts/") for n in run.files())
    listing = run_cli("runs", "--root", str(out), "--verify")
    assert "complete" in listing.stdout and path.name in listing.stdout


def test_predict_resumes_after_interruption(tmp_path, monkeypatch, photo_folder):
    calls = []
    real_forward = predict._forward
    interrupt_at = [2]

    def flaky(bundle, layers, batch, device):
        calls.append([i.id for i in batch])
        if len(calls) == interrupt_at[0]:
            raise KeyboardInterrupt
        return real_forward(bundle, layers, batch, device)

    monkeypatch.setattr(predict, "_forward", flaky)
    argv = ["predict", "--model", "efficientnet_lite0", "--images", str(photo_folder), "--batch-size", "1",
            "--layers", "blocks.1", "--out", str(tmp_path / "out"), "--device", "cpu"]
    assert cli.main(argv) == 130
    [entry] = list_runs(tmp_path / "out")
    assert entry.partial and entry.partial_status == "failed"
    calls.clear()
    interrupt_at[0] = -1
    assert cli.main(argv) == 0
    assert len(calls) == 2  # batch 0 was kept; only batches 1 and 2 ran
    [entry] = list_runs(tmp_path / "out")
    assert entry.run is not None and entry.run.summary["n_images"] == 3


def test_grayscale_input_runs(tmp_path):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.linspace(0, 255, 64 * 64).reshape(64, 64).astype(np.uint8)).save(grey)
    assert cli.main(["predict", "--model", "efficientnet_lite0", "--images", str(grey), "--out",
                     str(tmp_path / "o"), "--layers", "blocks.0", "--device", "cpu"]) == 0


@pytest.fixture
def tiny_video_ckpt(tmp_path) -> Path:
    import torch

    from core.data.synthetic import class_names
    from core.models import zoo
    from core.models.video_zoo import ARCHS, stages

    torch.manual_seed(0)
    names = class_names("motion")
    meta = {"architecture": "two_stream", "kwargs": {"num_classes": len(names)}, "classes": names,
            "preprocessing": {"input": "video+flow", "size": 32, "frames": 8}, "stages": stages("two_stream")}
    zoo.save_checkpoint(ARCHS["two_stream"](len(names)), tmp_path / "ts", meta)
    return tmp_path / "ts"


def test_predict_video_model_on_demo_and_synthetic_clips(tmp_path, tiny_video_ckpt):
    out = tmp_path / "out"
    spec = f"ckpt:{tiny_video_ckpt}"
    assert cli.main(["predict", "--model", spec, "--out", str(out), "--clips-per-video", "2",
                     "--layers", "flow.layer3,fusion", "--device", "cpu"]) == 0
    assert cli.main(["predict", "--model", spec, "--videos", "synthetic:motion:9", "--out", str(out),
                     "--device", "cpu"]) == 0
    runs = {e.run.manifest["data"]["source"]: e.run for e in list_runs(out)}
    demo = runs["demo"]
    assert demo.summary["n_images"] == 2 and demo.load_npz("features.npz")["fusion"].shape == (2, 128)
    assert [r["id"] for r in demo.load_json("predictions.json")["images"]] == ["bikes@0", "bikes@240"]  # 8-frame clips
    synth = runs["synthetic:motion:9"].load_json("predictions.json")["images"]
    assert [r["label_name"] for r in synth][:3] == ["left_to_right", "right_to_left", "up"]
    assert all(r["label"] is not None for r in synth)


def test_predict_refuses_the_wrong_input_kind(tmp_path, tiny_video_ckpt):
    proc = run_cli("predict", "--model", f"ckpt:{tiny_video_ckpt}", "--images", "demo", "--out", str(tmp_path))
    assert_one_line_error(proc, "video model", "--videos")
    proc = run_cli("predict", "--model", "efficientnet_lite0", "--videos", "demo", "--out", str(tmp_path))
    assert_one_line_error(proc, "image model")


def test_bad_synthetic_source_exits_2(tmp_path, tiny_video_ckpt):
    proc = run_cli("predict", "--model", f"ckpt:{tiny_video_ckpt}", "--videos", "synthetic:motion:many",
                   "--out", str(tmp_path))
    assert_one_line_error(proc, "synthetic:<task>:<number of clips>")
    proc = run_cli("predict", "--model", f"ckpt:{tiny_video_ckpt}", "--videos", "synthetic:dance",
                   "--out", str(tmp_path))
    assert_one_line_error(proc, "dance")
