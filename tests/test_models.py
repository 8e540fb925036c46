"""Model specs, layer addressing, hooks and activation layouts."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

from core.data.images import demo_images, preprocess_images
from core.errors import LayerError, ModelSpecError
from core.models import (
    capture,
    count_hooks,
    gap,
    layer_shapes,
    resolve_layers,
    resolve_model,
    to_feature_map,
    tokens_to_grid,
    zoo,
)

# -- the real weights -------------------------------------------------------------------------


@torch.no_grad()
def test_efficientnet_lite0_real_weights_classify_photos(lite0):
    photos = {i.id: i.image for i in demo_images(["chelsea", "coffee"])}
    x = preprocess_images([photos["chelsea"], photos["coffee"]], lite0.preprocessing)
    probs = lite0(x).softmax(-1)
    top = probs.argmax(-1).tolist()
    assert [lite0.class_name(i) for i in top] == ["Egyptian cat", "espresso"]
    assert probs[0, top[0]] > 0.5 and probs[1, top[1]] > 0.5
    assert lite0.preprocessing.size == (224, 224) and lite0.preprocessing.interpolation == "bicubic"


def test_efficientnet_stages_and_shapes(lite0):
    shapes = layer_shapes(lite0, lite0.stages)
    assert shapes["blocks.0"] == (1, 16, 112, 112)
    assert shapes["conv_head"] == (1, 1280, 7, 7)
    assert count_hooks(lite0.model) == 0


# -- layers and hooks ------------------------------------------------------------------------


def test_unknown_layer_lists_valid_names(lite0):
    with pytest.raises(LayerError) as err:
        resolve_layers(lite0.model, ["blocks.0", "blocks.9"], "efficientnet_lite0")
    msg = str(err.value)
    assert "'blocks.9'" in msg and "efficientnet_lite0" in msg
    assert "Did you mean" in msg and "blocks.0.0.conv_dw" in msg and "conv_head" in msg


def test_hooks_removed_after_exception(tiny_video_net):
    x = torch.randn(2, 3, 4, 8, 8)
    with pytest.raises(RuntimeError, match="boom"), capture(tiny_video_net, ["stem", "block"]) as acts:
        tiny_video_net(x)
        assert count_hooks(tiny_video_net) == 2
        raise RuntimeError("boom")
    assert acts["stem"].shape == (2, 8, 4, 8, 8)
    assert count_hooks(tiny_video_net) == 0


def test_hooks_removed_when_a_layer_name_is_bad(tiny_video_net):
    with pytest.raises(LayerError), capture(tiny_video_net, ["stem", "nope"]):
        pass
    assert count_hooks(tiny_video_net) == 0


def test_capture_with_reduction(tiny_video_net):
    with capture(tiny_video_net, ["block"], reduce=gap) as acts:
        tiny_video_net(torch.randn(3, 3, 4, 8, 8))
    assert acts["block"].shape == (3, 16)


# -- layouts ----------------------------------------------------------------------------------


def test_gap_layouts():
    t = torch.arange(2 * 3 * 4 * 5 * 6, dtype=torch.float).reshape(2, 3, 4, 5, 6)
    assert torch.equal(gap(t[:, :, 0, 0, 0]), t[:, :, 0, 0, 0])
    assert torch.allclose(gap(t[:, :, 0]), t[:, :, 0].mean(dim=(2, 3)))
    assert torch.allclose(gap(t), t.mean(dim=(2, 3, 4)))
    tokens = torch.randn(2, 1 + 12, 8)
    assert torch.allclose(gap(tokens, num_prefix_tokens=1), tokens[:, 1:].mean(1))
    nhwc = t[:, :, 0].permute(0, 2, 3, 1)  # (B, H, W, C)
    assert torch.allclose(gap(nhwc, channels_last=True), t[:, :, 0].mean(dim=(2, 3)))


def test_tokens_to_grid_roundtrip():
    fmap = torch.randn(2, 8, 2, 3, 4)  # (B, C, T', H', W')
    tokens = fmap.flatten(2).transpose(1, 2)  # (B, N, C), time-major token order
    with_cls = torch.cat([torch.zeros(2, 1, 8), tokens], dim=1)
    assert torch.equal(tokens_to_grid(with_cls, (2, 3, 4), num_prefix_tokens=1), fmap)
    with pytest.raises(LayerError, match="do not fit"):
        tokens_to_grid(with_cls, (2, 3, 5), num_prefix_tokens=1)


# -- specs ------------------------------------------------------------------------------------


def test_unknown_builtin_lists_choices():
    with pytest.raises(ModelSpecError, match="efficientnet_lite0"):
        resolve_model("efficientnet_lite9")


def test_bad_option_and_missing_weights(tmp_path):
    with pytest.raises(ModelSpecError, match="bad option"):
        resolve_model("efficientnet_lite0#colour=red")
    with pytest.raises(ModelSpecError, match="weights file not found"):
        resolve_model(f"torchvision:resnet18@{tmp_path / 'missing.pth'}")
    with pytest.raises(ModelSpecError, match="no model 'resnet19'"):
        resolve_model("torchvision:resnet19")


def test_torchvision_random_init_warns_and_weights_round_trip(tmp_path):
    with pytest.warns(UserWarning, match="random weights"):
        rand = resolve_model("torchvision:resnet18")
    assert rand.stages == ["layer1", "layer2", "layer3", "layer4"] and rand.class_names is None
    torch.manual_seed(1)
    net = __import__("torchvision").models.resnet18(num_classes=7)
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    bundle = resolve_model(f"torchvision:resnet18@{path}")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(bundle(x), net.eval()(x), atol=1e-5)
    assert bundle.describe()["spec"].startswith("torchvision:resnet18@")


def test_torchvision_video_model_layout():
    with pytest.warns(UserWarning):
        bundle = resolve_model("torchvision:r3d_18#size=32,frames=4")
    assert bundle.preprocessing.input == "video" and bundle.preprocessing.frames == 4
    shapes = layer_shapes(bundle, ["layer1", "layer4"])
    assert shapes["layer1"] == (1, 64, 4, 16, 16)  # (B, C, T, H, W)


class Payload:
    """Stands for any object whose unpickling would run the class's code."""


def test_weights_with_pickled_code_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.zeros(2, 2), "payload": Payload()}, path)
    with pytest.raises(ModelSpecError, match="never code"):
        resolve_model(f"torchvision:resnet18@{path}")


def test_timm_vit_tokens_with_safetensors(tmp_path):
    import timm
    from safetensors.torch import save_file

    path = tmp_path / "vit.safetensors"
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    bundle = resolve_model(f"timm:vit_tiny_patch16_224@{path}")
    assert bundle.token_grid == (14, 14) and bundle.num_prefix_tokens == 1
    x = torch.randn(1, 3, 224, 224)
    with capture(bundle, ["blocks.0"]) as acts:
        out = bundle(x)
    assert torch.allclose(out, net.eval()(x), atol=1e-4)
    assert acts["blocks.0"].shape == (1, 197, 192)
    assert to_feature_map(acts["blocks.0"], bundle).shape == (1, 192, 14, 14)


def test_torchscript_loads_but_cannot_be_hooked(tmp_path, tiny_video_net):
    path = tmp_path / "tiny.pt"
    x = torch.randn(1, 3, 4, 8, 8)
    torch.jit.save(torch.jit.trace(tiny_video_net, x), str(path))
    bundle = resolve_model(f"torchscript:{path}#input=video,size=8,frames=4")
    assert torch.allclose(bundle(x), tiny_video_net(x), atol=1e-6)
    assert "stem" in bundle.layer_names()
    with pytest.raises(LayerError, match="TorchScript"), capture(bundle, ["stem"]):
        pass


def test_py_factory_with_model_spec(tmp_path):
    src = tmp_path / "lab_model.py"
    src.write_text(textwrap.dedent('''
        from torch import nn
        MODEL_SPEC = {"input": "video", "size": 16, "frames": 4, "classes": ["a", "b"]}
        def make():
            return nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                                 nn.Linear(4, 2))
    '''))
    bundle = resolve_model(f"py:{src}:make")
    assert bundle.preprocessing.input == "video" and bundle.preprocessing.size == (16, 16)
    assert bundle.class_names == ["a", "b"]
    assert bundle(bundle.dummy_input(2)).shape == (2, 2)
    with pytest.raises(ModelSpecError, match=r"no function 'build'.*make"):
        resolve_model(f"py:{src}:build")


def test_checkpoint_folder(tmp_path, tiny_video_net):
    from tests.conftest import TinyVideoNet

    zoo.register("tiny_video_test")(TinyVideoNet)
    meta = {"architecture": "tiny_video_test", "kwargs": {}, "classes": ["w", "x", "y", "z"],
            "preprocessing": {"input": "video", "size": 8, "frames": 4}, "stages": ["stem", "block"],
            "description": "test net", "metrics": {"val_accuracy": 0.5}}
    zoo.save_checkpoint(tiny_video_net, tmp_path / "ckpt", meta)
    bundle = resolve_model(f"ckpt:{tmp_path / 'ckpt'}")
    x = torch.randn(2, 3, 4, 8, 8)
    assert torch.allclose(bundle(x), tiny_video_net(x))
    assert bundle.stages == ["stem", "block"] and bundle.extra["metrics"]["val_accuracy"] == 0.5
    (tmp_path / "ckpt" / "model.json").write_text("{broken")
    with pytest.raises(ModelSpecError, match="not valid JSON"):
        resolve_model(f"ckpt:{tmp_path / 'ckpt'}")


@pytest.fixture
def tiny_videomae(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.VideoMAEConfig(
        image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=32,
        num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=3,
        id2label={0: "left", 1: "right", 2: "still"}, label2id={"left": 0, "right": 1, "still": 2},
    )
    torch.manual_seed(0)
    model = transformers.VideoMAEForVideoClassification(config).eval()
    model.save_pretrained(tmp_path / "videomae")
    return tmp_path / "videomae", model


def test_hf_videomae_from_local_folder(tiny_videomae):
    folder, reference = tiny_videomae
    bundle = resolve_model(f"hf:{folder}")
    assert bundle.preprocessing.input == "video" and bundle.preprocessing.frames == 4
    assert bundle.class_names == ["left", "right", "still"]
    assert bundle.token_grid == (2, 2, 2) and bundle.num_prefix_tokens == 0
    x = torch.randn(1, 3, 4, 32, 32)  # (B, 3, T, H, W)
    with capture(bundle, [bundle.stages[0]]) as acts:
        logits = bundle(x)
    with torch.no_grad():
        expected = reference(pixel_values=x.permute(0, 2, 1, 3, 4)).logits
    assert torch.allclose(logits, expected, atol=1e-5)
    assert to_feature_map(acts[bundle.stages[0]], bundle).shape == (1, 32, 2, 2, 2)


def test_hf_missing_folder(tmp_path):
    with pytest.raises(ModelSpecError, match="not found"):
        resolve_model(f"hf:{tmp_path / 'nothing'}")


def test_dummy_input_shapes(lite0):
    assert lite0.dummy_input(2).shape == (2, 3, 224, 224)
    assert np.isclose(lite0.preprocessing.mean[0], 0.5)


# -- input kind of a user's model (issue 11, item 10) ----------------------------------------------

_CONV3D = '''
from torch import nn
def build():
    return nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                         nn.Linear(4, 3))
'''

_FRAMEWISE_THEN_3D = '''
import torch
from torch import nn
class Net(nn.Module):
    """A 2-D stem applied to every frame, then a 3-D conv: (B, 3, T, H, W) only."""
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.temporal = nn.Conv3d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
    def forward(self, x):
        b, c, t, h, w = x.shape
        y = self.stem(x.transpose(1, 2).reshape(b * t, c, h, w))
        y = y.reshape(b, t, 4, h, w).transpose(1, 2)
        return self.fc(self.temporal(y).mean(dim=(2, 3, 4)))
def build():
    return Net()
'''

_CONV2D = '''
from torch import nn
def build():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
'''

_LINEAR_ONLY = '''
from torch import nn
def build():
    return nn.Sequential(nn.Linear(7, 3))
'''


def _py(tmp_path, name: str, text: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    return f"py:{path}:build"


def test_py_conv3d_model_without_model_spec_is_a_video_model(tmp_path):
    bundle = resolve_model(_py(tmp_path, "my_model", _CONV3D) + "#size=16,frames=4")
    assert bundle.preprocessing.input == "video" and bundle.preprocessing.frames == 4
    assert bundle(bundle.dummy_input(2)).shape == (2, 3)
    assert "Conv3d" in bundle.describe()["info"]["input_kind"]


def test_py_framewise_model_is_told_by_a_probe(tmp_path):
    bundle = resolve_model(_py(tmp_path, "framewise", _FRAMEWISE_THEN_3D) + "#size=16")
    assert bundle.preprocessing.input == "video"
    assert "probe" in bundle.extra["input_kind"]


def test_py_conv2d_model_stays_an_image_model(tmp_path):
    bundle = resolve_model(_py(tmp_path, "image", _CONV2D))
    assert bundle.preprocessing.input == "image"


def test_declared_input_wins_over_inference(tmp_path):
    spec = _py(tmp_path, "my_model", _CONV3D)
    assert resolve_model(spec + "#input=image").preprocessing.input == "image"
    assert "input_kind" not in resolve_model(spec + "#input=video").extra


def test_ambiguous_model_says_how_to_declare(tmp_path):
    bundle = resolve_model(_py(tmp_path, "odd", _LINEAR_ONLY))
    assert bundle.preprocessing.input == "image"  # the old default, but flagged as a guess
    hint = bundle.input_hint()
    assert "#input=video" in hint and "MODEL_SPEC" in hint


def test_torchscript_conv3d_model_is_a_video_model(tmp_path, tiny_video_net):
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.trace(tiny_video_net, torch.randn(1, 3, 4, 8, 8)), str(path))
    bundle = resolve_model(f"torchscript:{path}#size=8,frames=4")
    assert bundle.preprocessing.input == "video"


def test_timm_model_is_an_image_model():
    with pytest.warns(UserWarning, match="random weights"):
        bundle = resolve_model("timm:resnet10t")
    assert bundle.preprocessing.input == "image" and "Conv2d" in bundle.extra["input_kind"]
