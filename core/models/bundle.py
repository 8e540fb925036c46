"""What a resolved model spec gives back: the module, its preprocessing and how to read it."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from core.errors import ModelSpecError

InputKind = Literal["image", "video", "video+flow"]
INPUT_KINDS: tuple[str, ...] = ("image", "video", "video+flow")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
MAX_SIDE = 4096  # input side in pixels; beyond it one frame alone takes gigabytes of activations
MAX_FRAMES = 1024


@dataclass
class Preprocessing:
    """How raw pixels become the model's input tensor.

    Images become ``(B, 3, H, W)``; videos ``(B, 3, T, H, W)`` with ``T = frames`` (the layout
    torchvision's video models take). Pixels are scaled to [0, 1], then ``(x - mean) / std``.
    """

    input: InputKind = "image"
    size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    frames: int | None = None
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if isinstance(self.size, int):
            self.size = (self.size, self.size)
        self.size = (int(self.size[0]), int(self.size[1]))
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        if self.input not in INPUT_KINDS:
            raise ValueError(f"input must be one of {INPUT_KINDS}, not {self.input!r}")
        if not all(1 <= s <= MAX_SIDE for s in self.size):
            raise ValueError(f"size must be 1 to {MAX_SIDE} pixels a side, not {self.size[0]}x{self.size[1]}")
        if len(self.mean) != 3 or not all(math.isfinite(v) for v in self.mean):
            raise ValueError(f"mean must be three finite numbers, not {self.mean}")
        if len(self.std) != 3 or not all(math.isfinite(v) and v > 0 for v in self.std):
            raise ValueError(f"std must be three finite numbers above 0, not {self.std}")
        if self.frames is not None and not 1 <= int(self.frames) <= MAX_FRAMES:
            raise ValueError(f"frames must be 1 to {MAX_FRAMES}, not {self.frames}")
        if self.input != "image" and not self.frames:
            self.frames = 16

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelBundle:
    """A ready model: the ``nn.Module`` in eval mode plus everything an analysis needs to use it.

    - ``stages``: the layer names analyses use by default (the model's blocks, shallow to deep).
    - ``token_grid``: for transformers, the token grid ``(T', H', W')`` or ``(H', W')`` at the
      default input size; ``num_prefix_tokens`` leading tokens (CLS, distillation) are not on it.
    - ``channels_last``: the model's feature maps are ``(B, ..., C)`` (e.g. Swin) instead of
      ``(B, C, ...)``.
    - ``forward_fn``: how to call the module and get logits ``(B, K)`` when it is not
      ``module(x)`` returning a tensor (Hugging Face models take ``pixel_values`` and return an
      object with ``.logits``). Without one, a module returning a tuple, list or dict gives its
      first tensor as the logits (said once on stderr); one returning no tensor is an error.
    - ``input_note``: how the input kind was found when the spec did not declare it (e.g.
      ``"inferred: its first convolution is a Conv3d"``); ``None`` when it was declared.
    """

    spec: str
    model: nn.Module
    preprocessing: Preprocessing
    description: str = ""
    class_names: list[str] | None = None
    stages: list[str] = field(default_factory=list)
    token_grid: tuple[int, ...] | None = None
    num_prefix_tokens: int = 0
    channels_last: bool = False
    hookable: bool = True
    forward_fn: Callable[[nn.Module, Any], torch.Tensor] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    input_note: str | None = None
    _said_first_tensor: bool = field(default=False, init=False, repr=False, compare=False)

    def __call__(self, x: Any) -> torch.Tensor:
        """Logits ``(B, K)`` for a preprocessed batch ``x``."""
        if self.forward_fn is not None:
            return self.forward_fn(self.model, x)
        out = self.model(*x) if isinstance(x, (tuple, list)) else self.model(x)
        if isinstance(out, torch.Tensor):
            return out
        logits = getattr(out, "logits", None)
        if not isinstance(logits, torch.Tensor):
            logits = output_tensor(out)
        if logits is None:
            raise ModelSpecError(f"{self.spec}: the model's forward returned {type(out).__name__} with no tensor "
                                 "in it; it must return the logits (B, K), or a tuple whose first tensor they are")
        if not self._said_first_tensor:
            self._said_first_tensor = True
            warnings.warn(f"{self.spec}: the model's forward returned a {type(out).__name__}; its first tensor "
                          f"{tuple(logits.shape)} is taken as the logits", stacklevel=2)
        return logits

    @property
    def device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    def to(self, device: str | torch.device) -> ModelBundle:
        self.model.to(device)
        return self

    def layer_names(self) -> list[str]:
        """Every addressable layer: the dotted ``named_modules()`` names, the root excluded."""
        return [name for name, _ in self.model.named_modules() if name]

    def class_name(self, index: int) -> str:
        if self.class_names and 0 <= index < len(self.class_names):
            return self.class_names[index]
        return f"class {index}"

    def dummy_input(self, batch: int = 1) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """A zero batch of the right shape, on the model's device."""
        p = self.preprocessing
        h, w = p.size
        dev = self.device
        if p.input == "image":
            return torch.zeros(batch, 3, h, w, device=dev)
        video = torch.zeros(batch, 3, p.frames, h, w, device=dev)
        if p.input == "video+flow":
            return video, torch.zeros(batch, 3, p.frames, h, w, device=dev)  # flow as colour-wheel RGB
        return video

    def input_hint(self) -> str:
        """For messages about the input kind: how it was found (when it was not declared) and how
        to declare it; ``""`` when the spec declared it."""
        if self.input_note is None:
            return ""
        return (f" ({self.input_note}; if that is wrong, declare it: add #input=video (or image, "
                "video+flow) to the model spec, or MODEL_SPEC = {'input': 'video'} to a py: model's file)")

    def describe(self) -> dict[str, Any]:
        """The manifest's ``model`` entry."""
        return {
            "spec": self.spec,
            "description": self.description,
            "preprocessing": self.preprocessing.to_dict(),
            "num_classes": len(self.class_names) if self.class_names else None,
            "stages": list(self.stages),
            "token_grid": list(self.token_grid) if self.token_grid else None,
            "num_prefix_tokens": self.num_prefix_tokens,
            **({"info": self.extra} if self.extra else {}),
        }


def output_tensor(output: Any) -> torch.Tensor | None:
    """The first tensor in a module output: itself, or the first found depth-first in a tuple, list
    or dict (in order), or an output object's ``last_hidden_state``; ``None`` if there is none."""
    if isinstance(output, torch.Tensor):
        return output
    items = output.values() if isinstance(output, dict) else output if isinstance(output, (tuple, list)) else ()
    for item in items:
        t = output_tensor(item)
        if t is not None:
            return t
    hidden = getattr(output, "last_hidden_state", None)
    return hidden if isinstance(hidden, torch.Tensor) else None


def default_stages(model: nn.Module, skip: Sequence[str] = ()) -> list[str]:
    """Best guess at a model's stages (its main blocks, shallow to deep), by common naming.

    ResNet-like ``layer1..layerN``; timm ``feature_info``; ``blocks.i`` (timm ViT/EfficientNet,
    torchvision MViT); ``features.i`` (torchvision MobileNet/VGG/Swin); ``encoder.layer.i``
    (Hugging Face); otherwise the top-level children but the last (usually the classifier).
    """
    names = dict(model.named_modules())
    info = getattr(model, "feature_info", None)
    if info is not None and hasattr(info, "module_name"):
        try:
            mods = [m for m in info.module_name() if m in names]
            if mods:
                return mods
        except Exception:
            pass
    layers = [n for n in names if n.startswith("layer") and n[5:].isdigit()]
    if layers:
        return sorted(layers, key=lambda n: int(n[5:]))
    for prefix in ("blocks", "features", "encoder.layer", "encoder.layers", "layers", "stages"):
        children = [f"{prefix}.{i}" for i in range(1000) if f"{prefix}.{i}" in names]
        if len(children) >= 2:
            return children
        for parent in (n for n in names if n.endswith("." + prefix)):
            children = [f"{parent}.{i}" for i in range(1000) if f"{parent}.{i}" in names]
            if len(children) >= 2:
                return children
    top = [n for n, _ in model.named_children() if n not in skip]
    return top[:-1] if len(top) > 1 else top
