"""The zoo's architectures: shapes, documented stages, frame-order (in)variance, per-head q/k/v."""

from __future__ import annotations

import pytest
import torch

from core.models import capture, layer_shapes, resolve_layers, resolve_model, to_feature_map, zoo
from core.models.video_zoo import ARCHS, TRANSFORMERS, stages

T, S = 8, 32


def make(arch: str, classes: int = 5) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = {"frames": T, "size": S, "patch": 8} if arch in TRANSFORMERS else {}
    return ARCHS[arch](classes, **kwargs).eval()


def clip(batch: int = 2) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(batch, 3, T, S, S)


def inputs(arch: str, x: torch.Tensor):
    return (x, x.flip(1)) if arch == "two_stream" else (x,)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_logits_and_documented_stages(arch):
    model = make(arch)
    x = clip()
    with torch.no_grad(), capture(model, stages(arch)) as acts:
        out = model(*inputs(arch, x))
    assert out.shape == (2, 5)
    resolve_layers(model, stages(arch))
    for name, act in acts.items():
        if arch in TRANSFORMERS:
            assert act.ndim == 3 and act.shape[1] == (T // 2) * (S // 8) ** 2, name
        else:
            assert act.ndim == 5 and act.shape[0] == 2, (name, act.shape)


def test_c2d_ignores_frame_order():
    model = make("c2d")
    x = clip()
    perm = torch.randperm(T)
    with torch.no_grad():
        assert torch.allclose(model(x), model(x[:, :, perm]), atol=1e-5)
        assert torch.allclose(model(x), model(x.flip(2)), atol=1e-5)


@pytest.mark.parametrize("arch", ["r3d", "slowfast", "vit"])
def test_temporal_models_see_frame_order(arch):
    model = make(arch)
    x = clip()
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x.flip(2)), atol=1e-4)


def test_two_stream_uses_both_streams():
    model = make("two_stream")
    x = clip()
    with torch.no_grad():
        base = model(x, x)
        assert not torch.allclose(base, model(x, torch.zeros_like(x)), atol=1e-4)
        assert not torch.allclose(base, model(torch.zeros_like(x), x), atol=1e-4)


def test_vit_keys_split_into_heads_on_the_token_grid():
    model = make("vit")
    heads = model.blocks[0].attn.heads
    with torch.no_grad(), capture(model, ["blocks.0.attn.k", "blocks.0.attn.q", "blocks.0.attn.v"]) as acts:
        model(clip(1))
    k = acts["blocks.0.attn.k"]
    n, d = k.shape[1], k.shape[2]
    assert n == model.grid[0] * model.grid[1] * model.grid[2] and d % heads == 0
    per_head = k.reshape(1, n, heads, d // heads)
    assert per_head.shape == (1, n, heads, d // heads)
    assert not torch.equal(acts["blocks.0.attn.q"], k)


def test_zoo_checkpoint_loads_by_spec(tmp_path):
    model = make("slowfast", 3)
    meta = {"architecture": "slowfast", "kwargs": {"num_classes": 3}, "classes": ["a", "b", "c"],
            "preprocessing": {"input": "video", "size": S, "frames": T}, "stages": stages("slowfast")}
    zoo.save_checkpoint(model, tmp_path / "sf", meta, dtype=torch.float16)
    bundle = resolve_model(f"ckpt:{tmp_path / 'sf'}")
    x = clip()
    with torch.no_grad():
        assert torch.allclose(bundle(x), model(x), atol=5e-2)  # float16 storage
    shapes = layer_shapes(bundle, ["fast.layer3", "slow.layer3"])
    assert shapes["fast.layer3"][2] == T and shapes["slow.layer3"][2] == T // 4  # fast keeps all frames


def test_two_stream_bundle_dummy_input(tmp_path):
    model = make("two_stream", 2)
    meta = {"architecture": "two_stream", "kwargs": {"num_classes": 2},
            "preprocessing": {"input": "video+flow", "size": S, "frames": T}, "stages": stages("two_stream")}
    zoo.save_checkpoint(model, tmp_path / "ts", meta)
    bundle = resolve_model(f"ckpt:{tmp_path / 'ts'}")
    shapes = layer_shapes(bundle, ["rgb.layer3", "flow.layer3", "fusion"])
    assert shapes["fusion"][:3] == (1, 128, T)


def test_vit_bundle_feature_map(tmp_path):
    model = make("vit", 2)
    meta = {"architecture": "vit", "kwargs": {"num_classes": 2, "frames": T, "size": S, "patch": 8},
            "preprocessing": {"input": "video", "size": S, "frames": T}, "stages": stages("vit"),
            "token_grid": list(model.grid), "num_prefix_tokens": 0}
    zoo.save_checkpoint(model, tmp_path / "vit", meta)
    bundle = resolve_model(f"ckpt:{tmp_path / 'vit'}")
    with capture(bundle, ["blocks.3"]) as acts:
        bundle(bundle.dummy_input(1))
    assert to_feature_map(acts["blocks.3"], bundle).shape == (1, 96, T // 2, S // 8, S // 8)
