"""The plain-tubelet video transformer (`tubelet_vit`): shapes, a purely linear 2x8x8 tubelet embedding,
VTCD-addressable attention, a tiny VTCD run end to end, attention evidence; and the training recipe
options (cosine schedule, augmentation, distillation, curriculum, label smoothing) at tiny scale."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from core.data import synthetic
from core.errors import UserError
from core.models import resolve_model, zoo
from core.models.video_zoo import TubeletTransformer, stages
from precompute import attention_evidence, train
from tests.test_train import train_args

T, S = 8, 32


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(num_classes: int = 3) -> TubeletTransformer:
    torch.manual_seed(0)
    return TubeletTransformer(num_classes, frames=T, size=S, dim=32, depth=2, heads=2)


def test_shapes_grid_and_linear_tubelet_embedding():
    model = zoo.build("tubelet_vit", {"num_classes": 9, "frames": 16, "size": 64})
    assert model.grid == (8, 8, 8)
    assert model(torch.randn(2, 3, 16, 64, 64)).shape == (2, 9)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d | nn.Conv2d)]
    assert convs == [model.patch_embed]  # no convolutional stages: one linear map per tubelet
    assert model.patch_embed.kernel_size == model.patch_embed.stride == (2, 8, 8)
    assert sum(p.numel() for p in model.parameters()) < 500_000  # small enough for a CPU
    assert stages("tubelet_vit") == [f"blocks.{i}" for i in range(4)]
    names = dict(model.named_modules())
    for i in range(4):
        for proj in ("q", "k", "v"):
            assert isinstance(names[f"blocks.{i}.attn.{proj}"], nn.Linear)


def test_embedding_is_linear_in_each_tubelet():
    """Token (t, y, x) depends only on frames 2t..2t+1 and pixels 8y..8y+7, 8x..8x+7."""
    model = tiny_model().eval()
    captured = {}
    model.embed_norm.register_forward_hook(lambda m, i, o: captured.__setitem__("in", i[0]))
    x = torch.randn(1, 3, T, S, S)
    model(x)
    before = captured["in"].clone()  # (1, T', H'W', D)
    x2 = x.clone()
    x2[:, :, 2:4, 8:16, 16:24] += 1.0  # tubelet (t=1, y=1, x=2)
    model(x2)
    changed = (captured["in"] - before).abs().sum(-1)[0]  # (T', H'W')
    assert changed.nonzero().tolist() == [[1, 1 * (S // 8) + 2]]


def test_difference_init_starts_half_the_channels_blind_to_static_input():
    """``embed_init="difference"``: the first half of the embedding's channels give only their bias on a clip
    that does not change over time, and respond to a change; the other half and the map's linearity are as
    with the random start."""
    torch.manual_seed(0)
    model = TubeletTransformer(3, frames=T, size=S, dim=32, depth=1, heads=2, embed_init="difference")
    embed, bias = model.patch_embed, model.patch_embed.bias.detach()[:, None, None, None]
    static = torch.rand(1, 3, 1, S, S).repeat(1, 1, T, 1, 1)
    out = embed(static)[0].detach()  # (32, T/2, S/8, S/8)
    assert torch.allclose(out[:16], bias[:16].expand_as(out[:16]), atol=1e-5)
    assert (out[16:] - bias[16:]).abs().max() > 0.1
    moving = static.clone()
    moving[:, :, 1::2] = torch.roll(static[:, :, 1::2], 1, dims=-1)  # the second frame of each tubelet shifted
    assert (embed(moving)[0, :16].detach() - bias[:16]).abs().max() > 0.1
    with pytest.raises(ValueError, match="embed_init"):
        TubeletTransformer(3, frames=T, size=S, embed_init="sobel")


def test_attention_carries_time_order():
    """Unlike a frame-wise model, the output depends on the order of the tubelets in time."""
    model = tiny_model().eval()
    x = torch.randn(2, 3, T, S, S)
    shuffled = x.reshape(2, 3, T // 2, 2, S, S)[:, :, [2, 0, 3, 1]].reshape(2, 3, T, S, S)
    assert not torch.allclose(model(x), model(shuffled), atol=1e-4)


def _save(model: nn.Module, folder: Path, task: str, classes: list[str]) -> Path:
    kwargs = {"num_classes": len(classes), "frames": T, "size": S, "dim": 32, "depth": 2, "heads": 2}
    zoo.save_checkpoint(model, folder, {
        "architecture": "tubelet_vit", "kwargs": kwargs, "description": "tiny random tubelet_vit (tests)",
        "task": task, "preprocessing": {"input": "video", "size": S, "frames": T, "mean": [0.45] * 3,
                                        "std": [0.225] * 3},
        "classes": classes, "stages": stages("tubelet_vit", depth=2), "token_grid": list(model.grid),
        "num_prefix_tokens": 0, "heads": 2})
    return folder


def test_tiny_vtcd_run_end_to_end(tmp_path):
    from core.vtcd import VTCDConfig, analyse

    ckpt = _save(tiny_model(), tmp_path / "tiny-tvit", "appearance", list(synthetic.APPEARANCES[:3]))
    config = VTCDConfig(n_masks=16, head_masks=8, max_concepts=4, kmeans_n_init=2, cnmf_max_iter=100,
                        attribution_steps=5, n_random_orders=2, batch_size=16)
    result = analyse(f"ckpt:{ckpt}", "synthetic:appearance:3", config, attribution=False, device="cpu")
    assert {u.layer for u in result.discovery.units} == {"blocks.0", "blocks.1"}
    assert len(result.concept_names) > 0
    assert np.isfinite(result.heads.importance).all()


def test_attention_evidence_per_block(tmp_path):
    ckpt = _save(tiny_model(3), tmp_path / "tiny-occ", "occlusion", synthetic.class_names("occlusion"))
    r = attention_evidence.measure(f"ckpt:{ckpt}", n_videos=3, n_draws=1, batch_size=3)
    assert r["task"] == "occlusion" and r["n_videos"] == 3
    assert [b["layer"] for b in r["blocks"]] == ["blocks.0", "blocks.1"]
    for b in r["blocks"]:
        assert 0.0 < b["entropy"] <= 1.0 and b["branch_abs"] >= abs(b["branch_delta"])
    assert r["blocks"][0]["branch_abs"] > 0  # a random model's attention branch does change its output
    assert "`blocks.1`" in attention_evidence.table([r])


def test_evidence_refuses_a_cnn(capsys):
    with pytest.raises(UserError, match="not a transformer"):
        attention_evidence.measure("r3d-motion", n_videos=1)
    assert attention_evidence.main(["--model", "r3d-motion", "--videos", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a transformer" in err


# ----------------------------------------------------------------------------------------------
# Training recipe options


def test_cosine_schedule_warms_up_then_decays():
    f = [train.lr_factor(i, 100, 10) for i in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(f[9:])) and f[-1] < 0.01


def test_augment_is_deterministic_and_keeps_the_clip_whole():
    x = torch.randn(4, 3, T, S, S)
    a, b = train.augment(x, [0, 1, 2]), train.augment(x, [0, 1, 2])
    assert torch.equal(a, b) and not torch.equal(a, train.augment(x, [0, 1, 3]))
    # every frame of a clip gets the same shift and jitter: frame differences only scale
    da, dx = a[:, :, 1:] - a[:, :, :-1], x[:, :, 1:] - x[:, :, :-1]
    ratio = da.flatten(1).norm(dim=1) / dx.flatten(1).norm(dim=1)
    assert ((ratio > 0.79) & (ratio < 1.21)).all()


def test_distillation_loss():
    t = torch.randn(5, 4)
    assert train.distillation_loss(t, t, 2.0).abs() < 1e-6
    assert train.distillation_loss(torch.zeros(5, 4), t, 2.0) > 0.01


def test_curriculum_epochs_use_the_first_classes_only(tmp_path, monkeypatch):
    seen: list[np.ndarray] = []
    original = train.batch_input

    def spy(data, idx, device):
        if len(data["labels"]) == 48:  # the training split (the held-out one has 24)
            seen.append(data["labels"][idx].copy())
        return original(data, idx, device)

    monkeypatch.setattr(train, "batch_input", spy)
    out = train.run(train_args(tmp_path, "tubelet_vit", "occlusion", 2, "--curriculum-epochs", "1",
                               "--curriculum-classes", "2", "--schedule", "cosine", "--label-smoothing", "0.1",
                               "--train-augment", "shift"))
    per_epoch = len(seen) // 2
    first, second = np.concatenate(seen[:per_epoch]), np.concatenate(seen[per_epoch:])
    assert set(first.tolist()) <= {0, 1} and len(first) == 48
    assert 2 in set(second.tolist())
    meta = json.loads((out / "model.json").read_text())
    assert meta["architecture"] == "tubelet_vit" and meta["token_grid"] == [4, 4, 4]
    assert meta["training"]["recipe"]["curriculum_classes"] == 2 and meta["classes"] == ["passes", "returns",
                                                                                            "hidden"]
    assert resolve_model(f"ckpt:{out}").token_grid == (4, 4, 4)


def test_distillation_from_a_teacher_checkpoint(tmp_path):
    teacher = train.run(train_args(tmp_path / "t", "r3d", "motion", 1))
    args = train_args(tmp_path / "s", "tubelet_vit", "motion", 2, "--distill-from", f"ckpt:{teacher}",
                      "--distill-weight", "1.0")
    student = train.run(args)
    log = json.loads((student / "train_log.json").read_text())
    assert log[-1]["train_loss"] < log[0]["train_loss"]  # the KL to the teacher falls
    meta = json.loads((student / "model.json").read_text())
    assert meta["training"]["recipe"]["distill_from"] == f"ckpt:{teacher}"
    with pytest.raises(UserError, match="classes"):
        train.run(train_args(tmp_path / "x", "tubelet_vit", "appearance", 1, "--distill-from", f"ckpt:{teacher}"))


def test_bad_recipe_flags_are_user_errors(tmp_path):
    for extra, words in ((["--label-smoothing", "1.5"], "--label-smoothing"),
                         (["--curriculum-epochs", "2"], "--curriculum-classes"),
                         (["--distill-weight", "2"], "--distill-weight")):
        with pytest.raises(UserError, match=words):
            train.run(train_args(tmp_path, "tubelet_vit", "motion", 1, *extra))
    with pytest.raises(UserError, match="--embed-init works with tubelet_vit only"):
        train.run(train_args(tmp_path, "r3d", "motion", 1, "--embed-init", "difference"))
