"""StaticDropout (dissertation 3.5.2): the torch scores match the numpy reference, frame-order
invariant features score 1, masks drop exactly round(r * C) channels and favour static ones, the
hook never outlives its context, and a tiny training run with it records its settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from core.models import zoo
from core.static_dynamic.scores import unit_scores
from core.static_dynamic.static_dropout import StaticDropout, sample_drop_mask, shuffle_frames, unit_static_scores
from precompute import cli


class Toy(nn.Module):
    """``(B, 1, T, 1, 1)`` clips -> ``fc`` input of ``2k`` channels: the first ``k`` scale the clip's
    temporal mean (order-invariant: s_static = 1), the last ``k`` its frames weighted by their centred
    time index (order-dependent: s_static < 1, about -0.2 on average). ``fc`` is the identity."""

    def __init__(self, k: int = 8) -> None:
        super().__init__()
        self.k = k
        self.fc = nn.Linear(2 * k, 2 * k, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(2 * k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[:, 0, :, 0, 0]  # (B, T)
        w = torch.arange(1, self.k + 1, dtype=x.dtype)
        static = v.mean(dim=1, keepdim=True) * w
        t = torch.arange(v.shape[1], dtype=x.dtype)
        dynamic = (v * (t - t.mean())).sum(dim=1, keepdim=True) * w
        return self.fc(torch.cat([static, dynamic], dim=1))


def test_frame_order_invariant_features_score_one():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 3, 8, 4, 4, generator=g, dtype=torch.float64)
    proj = torch.randn(3, 10, generator=g, dtype=torch.float64)
    features = lambda clips: clips.mean(dim=(2, 3, 4)) @ proj  # noqa: E731  temporal (and spatial) mean
    scores = unit_static_scores(features(x), features(shuffle_frames(x, g)))
    assert scores.shape == (10,) and torch.allclose(scores, torch.ones(10, dtype=torch.float64), atol=1e-9)


def test_c2d_head_input_scores_one():
    """C2D is blind to frame order, so every live channel before its classifier scores 1."""
    torch.manual_seed(0)
    model = zoo.build("c2d", {"num_classes": 9}).train()
    x = torch.randn(8, 3, 8, 32, 32)
    with StaticDropout(model, "static", 0.3, seed=1) as sd:
        sd.refresh(x)
    live = torch.isfinite(sd.scores)
    assert live.sum() >= 100 and torch.allclose(sd.scores[live], torch.ones(int(live.sum())), atol=1e-3)
    assert model.training and all(m.training for m in model.modules())  # modes restored after the eval forwards


def test_torch_scores_match_numpy_reference():
    rng = np.random.default_rng(0)
    za = rng.normal(size=(40, 16))
    zb = 0.6 * za + rng.normal(size=(40, 16)) * np.linspace(0.1, 3, 16)
    za[:, 3] = zb[:, 3] = 2.5  # a dead unit
    za[:, 7] = 1.0  # constant in one copy only: not dead
    expected = unit_scores(za, zb)
    got = unit_static_scores(torch.from_numpy(za), torch.from_numpy(zb))
    assert got.dtype == torch.float64
    assert np.isnan(expected[3]) and torch.isnan(got[3])
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6, equal_nan=True)
    with pytest.raises(ValueError, match="at least 2"):
        unit_static_scores(torch.zeros(1, 4), torch.zeros(1, 4))


@pytest.mark.parametrize("c,rate", [(10, 0.3), (128, 0.3), (7, 0.5), (96, 0.1), (5, 0.0)])
def test_mask_drops_exactly_round_rate_c(c, rate):
    g = torch.Generator().manual_seed(c)
    scores = torch.randn(c, generator=g)
    for _ in range(5):
        mask = sample_drop_mask(scores, rate, g)
        assert mask.dtype == torch.bool and mask.shape == (c,) and int(mask.sum()) == round(rate * c)


def test_dead_units_are_dropped_only_when_live_ones_run_out():
    g = torch.Generator().manual_seed(0)
    scores = torch.tensor([0.5, float("nan"), -0.2, float("nan"), 0.9, 0.1, float("nan"), 0.0, 0.3, 0.7])
    dead = torch.isnan(scores)
    for _ in range(50):
        mask = sample_drop_mask(scores, 0.3, g)
        assert int(mask.sum()) == 3 and not (mask & dead).any()
    mostly_dead = torch.full((10,), float("nan"))
    mostly_dead[:2] = 0.5
    mask = sample_drop_mask(mostly_dead, 0.5, g)
    assert int(mask.sum()) == 5 and mask[:2].all()  # both live ones, then 3 dead ones at random


def test_much_more_static_channels_are_dropped_much_more_often():
    g = torch.Generator().manual_seed(0)
    scores = torch.tensor([1.0] * 5 + [-1.0] * 5)  # softmax odds e^2 = 7.4 for one draw
    freq = torch.stack([sample_drop_mask(scores, 0.3, g) for _ in range(2000)]).double().mean(dim=0)
    high, low = freq[:5], freq[5:]
    assert high.min() > 4 * low.max()
    assert abs(float(freq.sum()) - 3.0) < 1e-9  # every draw drops exactly 3


def test_shuffle_is_never_the_identity_and_keeps_pairs_aligned():
    g = torch.Generator().manual_seed(0)
    rgb = torch.arange(2 * 3 * 2).float().reshape(1, 1, 2, 2, 3).expand(2, 3, 2, 2, 3)
    for _ in range(10):  # two frames: the only non-identity order is the swap
        assert torch.equal(shuffle_frames(rgb, g), rgb.flip(2))
    x = torch.randn(2, 3, 6, 2, 2)
    a, b = shuffle_frames((x, 2 * x), g)
    assert torch.equal(b, 2 * a) and not torch.equal(a, x)
    assert torch.equal(a.sort(dim=2).values, x.sort(dim=2).values)  # the same frames, reordered
    with pytest.raises(ValueError, match="at least 2"):
        shuffle_frames(torch.zeros(1, 3, 1, 2, 2), g)


def test_static_mode_zeroes_the_sampled_channels_and_favours_static_ones():
    torch.manual_seed(0)
    model = Toy(k=8).train()
    x = torch.randn(32, 1, 6, 1, 1)
    dropped, dynamic_scores = torch.zeros(16), []
    with StaticDropout(model, "static", rate=0.25, every=3, seed=0) as sd:
        for i in range(300):
            sd.step(x)
            if i % 3 == 0:
                assert sd.scores[:8].sub(1).abs().max() < 1e-5 and sd.scores[8:].max() < 1 - 1e-3
                dynamic_scores.append(sd.scores[8:])
                dropped += sd.drop.float()
            out = model(x)
            assert int(sd.drop.sum()) == 4 and torch.equal(out[:, sd.drop], torch.zeros(32, 4))
    ref = model(x)  # the hook is gone: nothing dropped
    assert torch.allclose(out[:, ~sd.drop], ref[:, ~sd.drop] / 0.75)
    assert torch.stack(dynamic_scores).mean() < 0.5
    assert dropped[:8].mean() > 2 * dropped[8:].mean()


def test_standard_mode_drops_the_rate_per_sample():
    torch.manual_seed(0)
    model = Toy(k=32).train()
    x = torch.randn(200, 1, 4, 1, 1)
    with StaticDropout(model, "standard", rate=0.3) as sd:
        sd.step(x)
        out = model(x)
    ref = model(x)
    zero = (out == 0) & (ref != 0)
    assert abs(float(zero.float().mean()) - 0.3) < 0.02
    assert not torch.equal(zero[0], zero[1])  # a mask per clip
    assert torch.allclose(out[~zero], ref[~zero] / 0.7)


@pytest.mark.parametrize("mode", ["static", "standard"])
def test_eval_mode_output_is_unchanged(mode):
    torch.manual_seed(0)
    model = zoo.build("r3d", {"num_classes": 9}).eval()
    x = torch.randn(4, 3, 8, 32, 32)
    with torch.no_grad():
        ref = model(x)
        with StaticDropout(model, mode, rate=0.5, every=1) as sd:
            sd.step(x)
            assert mode == "standard" or int(sd.drop.sum()) == 64
            assert torch.equal(model(x), ref)
    assert not model.training


def test_hook_is_removed_after_the_context_even_on_error():
    model = Toy()
    with StaticDropout(model, "static"):
        assert len(model.fc._forward_pre_hooks) == 1
    assert len(model.fc._forward_pre_hooks) == 0
    with pytest.raises(RuntimeError, match="boom"), StaticDropout(model, "standard"):
        raise RuntimeError("boom")
    assert len(model.fc._forward_pre_hooks) == 0
    sd = StaticDropout(model, "static", every=1)
    sd.refresh(torch.randn(4, 1, 5, 1, 1))  # outside a context: a temporary capture hook only
    assert len(model.fc._forward_pre_hooks) == 0 and sd.drop is not None
    with pytest.raises(ValueError, match="unknown dropout mode"):
        StaticDropout(model, "info")


TINY = ["--model", "c2d", "--task", "motion", "--train-size", "32", "--val-size", "16", "--size", "32",
        "--frames", "8", "--batch-size", "8", "--lr", "3e-3", "--weight-decay", "0", "--device", "cpu"]


def test_tiny_training_run_records_dropout_and_shuffled_accuracy(tmp_path):
    argv = ["train", *TINY, "--epochs", "1", "--finetune-epochs", "1", "--static-dropout", "0.3",
            "--static-dropout-every", "2", "--out", str(tmp_path / "models"), "--cache-dir", str(tmp_path / "cache")]
    assert cli.main(argv) == 0
    out = tmp_path / "models" / "c2d-motion"
    meta = json.loads((out / "model.json").read_text())
    assert meta["training"]["dropout"] == {"kind": "static", "rate": 0.3, "every": 2, "layer": "input of fc",
                                           "finetune_epochs": 1, "finetune_lr": 1e-5}
    assert meta["training"]["epochs"] == 1 and meta["epoch"] == 2
    m = meta["metrics"]
    assert 0 <= m["val_accuracy_shuffled"] <= 1
    assert m["val_accuracy_shuffled"] == m["val_accuracy"]  # C2D ignores frame order
    log = json.loads((out / "train_log.json").read_text())
    assert [e["epoch"] for e in log] == [1, 2] and log[1].get("finetune") and "finetune" not in log[0]
    assert (out / "epochs" / "epoch-02" / "model.safetensors").is_file()


def test_killed_static_dropout_run_resumes_to_the_same_weights(tmp_path, interrupt_training):
    common = [*TINY, "--epochs", "2", "--finetune-epochs", "1", "--static-dropout", "0.3",
              "--static-dropout-every", "3", "--cache-dir", str(tmp_path / "cache")]
    assert cli.main(["train", *common, "--out", str(tmp_path / "a")]) == 0
    restore = interrupt_training()
    argv = ["train", *common, "--out", str(tmp_path / "b")]
    assert cli.main(argv) == 130
    restore()
    assert cli.main(argv) == 0  # epoch 2 (StaticDropout) and epoch 3 (fine-tune) after the resume
    a = load_file(str(tmp_path / "a" / "c2d-motion" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "c2d-motion" / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_standard_kind_and_none_differ_and_bad_rate_exits_2(tmp_path, capsys):
    base = ["train", *TINY, "--epochs", "1", "--cache-dir", str(tmp_path / "cache")]
    assert cli.main([*base, "--out", str(tmp_path / "none")]) == 0
    assert cli.main([*base, "--out", str(tmp_path / "std"), "--static-dropout", "0.3",
                     "--dropout-kind", "standard"]) == 0
    none = json.loads((tmp_path / "none" / "c2d-motion" / "model.json").read_text())["training"]["dropout"]
    std = json.loads((tmp_path / "std" / "c2d-motion" / "model.json").read_text())["training"]["dropout"]
    assert none["kind"] == "none" and none["finetune_lr"] is None
    assert std == {"kind": "standard", "rate": 0.3, "every": None, "layer": "input of fc", "finetune_epochs": 0,
                   "finetune_lr": None}
    a = load_file(str(tmp_path / "none" / "c2d-motion" / "model.safetensors"))
    b = load_file(str(tmp_path / "std" / "c2d-motion" / "model.safetensors"))
    assert not torch.equal(a["fc.weight"], b["fc.weight"])
    assert cli.main([*base, "--out", str(tmp_path / "bad"), "--static-dropout", "1.5"]) == 2
    assert "--static-dropout must be in [0, 1)" in capsys.readouterr().err
