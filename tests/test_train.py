"""Training the zoo: the loss falls, checkpoints reload, a killed run resumes exactly, and C2D
cannot tell a motion from its time reversal."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from core.data import synthetic
from core.models import resolve_model
from precompute import cli, train

TINY = {"train_size": 48, "val_size": 24, "frames": 8, "size": 32, "batch_size": 8}


def train_args(tmp_path: Path, arch: str, task: str, epochs: int, *extra: str) -> argparse.Namespace:
    """The parsed ``train`` command line (the parser holds every default), tiny sizes, plus ``extra`` flags."""
    return cli.parse_args(["train", "--model", arch, "--task", task, "--epochs", str(epochs), "--lr", "3e-3",
                           "--weight-decay", "0", "--device", "cpu", "--out", str(tmp_path / "models"),
                           "--cache-dir", str(tmp_path / "cache"),
                           *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()], *extra])


def test_loss_falls_and_checkpoint_reloads(tmp_path):
    out = train.run(train_args(tmp_path, "r3d", "appearance", 3))
    log = json.loads((out / "train_log.json").read_text())
    assert [e["epoch"] for e in log] == [1, 2, 3]
    assert log[-1]["train_loss"] < 0.9 * log[0]["train_loss"]
    meta = json.loads((out / "model.json").read_text())
    assert meta["task"] == "appearance" and meta["classes"] == synthetic.class_names("appearance")
    assert meta["training"]["train_size"] == 48 and "machine" in meta["training"]

    bundle = resolve_model(f"ckpt:{out}")
    config = synthetic.SyntheticConfig(task="appearance", frames=8, size=32)
    val = train.load_split(config, 24, "val", False, tmp_path / "cache")
    again = train.evaluate(bundle.model, val, torch.device("cpu"))
    assert again["accuracy"] == meta["metrics"]["val_accuracy"]
    final = load_file(str(out / "model.safetensors"))
    last_epoch = load_file(str(out / "epochs" / "epoch-03" / "model.safetensors"))
    assert all(torch.equal(final[k], last_epoch[k]) for k in final)
    assert not list(out.glob("epochs/*/optimizer.*"))  # optimizer state is dropped once done


def test_killed_training_resumes_to_the_same_weights(tmp_path, interrupt_training):
    straight = train.run(train_args(tmp_path / "a", "vit", "motion", 3))
    restore = interrupt_training()
    argv = ["train", "--model", "vit", "--task", "motion", "--epochs", "3", "--lr", "3e-3", "--weight-decay", "0",
            "--device", "cpu", "--out", str(tmp_path / "b"), "--cache-dir", str(tmp_path / "cache"),
            *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]]
    assert cli.main(argv) == 130
    assert (tmp_path / "b" / "vit-motion" / "epochs" / "epoch-01" / "optimizer.json").is_file()
    assert not (tmp_path / "b" / "vit-motion" / "model.json").exists()
    restore()
    other = [a if a != "3e-3" else "1e-3" for a in argv]
    assert cli.main(other) == 2  # an unfinished run with other settings is not resumed (nor harmed)
    assert (tmp_path / "b" / "vit-motion" / "epochs" / "epoch-01" / "optimizer.json").is_file()
    assert cli.main(argv) == 0
    a = load_file(str(straight / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "vit-motion" / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert cli.main(argv) == 2  # already trained: refuses without --overwrite


def test_c2d_cannot_tell_a_motion_from_its_reversal(tmp_path):
    out = train.run(train_args(tmp_path, "c2d", "motion", 2))
    bundle = resolve_model(f"ckpt:{out}")
    config = synthetic.SyntheticConfig(task="motion", frames=8, size=32)
    names = synthetic.class_names("motion")
    clips, labels = [], []
    for a, b in [("left_to_right", "right_to_left"), ("up", "down"), ("rotate_cw", "rotate_ccw"),
                 ("approach", "recede")]:
        for i in range(6):
            for name in (a, b):
                clips.append(synthetic.make_video(config, 10_000 + i, label=names.index(name)).frames)
                labels.append(names.index(name))
    x = train.to_input(np.stack(clips), torch.device("cpu"))
    with torch.no_grad():
        logits = bundle(x)
    forward, backward = logits[0::2], logits[1::2]
    assert torch.allclose(forward, backward, atol=1e-4)  # a clip and its exact reversal look the same
    pred = logits.argmax(-1).numpy()
    assert (pred == np.array(labels)).mean() <= 0.5


def test_unknown_zoo_model_exits_2(tmp_path, capsys):
    assert cli.main(["train", "--model", "resnet50", "--out", str(tmp_path)]) == 2
    assert "unknown zoo model 'resnet50'" in capsys.readouterr().err


SHIPPED = sorted(p for p in (Path(__file__).resolve().parents[1] / "assets" / "models").glob("*/model.json"))


@pytest.mark.skipif(not SHIPPED, reason="no shipped zoo checkpoints")
@pytest.mark.parametrize("meta_path", SHIPPED, ids=[p.parent.name for p in SHIPPED])
def test_shipped_checkpoint_reproduces_its_accuracy(meta_path, tmp_path):
    meta = json.loads(meta_path.read_text())
    t = meta["training"]
    data = synthetic.SyntheticConfig(**t["data"])
    with_flow = meta["preprocessing"]["input"] == "video+flow"
    val = train.load_split(data, t["val_size"], "val", with_flow, tmp_path)
    bundle = resolve_model(meta_path.parent.name)
    result = train.evaluate(bundle.model, val, torch.device("cpu"))
    assert abs(result["accuracy"] - meta["metrics"]["val_accuracy"]) <= 1 / t["val_size"]


def test_a_damaged_flow_cache_is_rebuilt(tmp_path):
    config = synthetic.SyntheticConfig(task="motion", frames=8, size=32)
    first = train.load_split(config, 6, "val", True, tmp_path)
    [flow_file] = tmp_path.glob("flow-*.npz")
    flow_file.write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="regenerating the flow cache"):
        again = train.load_split(config, 6, "val", True, tmp_path)
    assert np.array_equal(first["flow"], again["flow"]) and first["flow"].shape == (6, 8, 32, 32, 3)
