"""The video model zoo: small members of the families the dissertation compares.

Every model takes ``(B, 3, T, H, W)`` clips (the two-stream model a pair ``(rgb, flow_rgb)`` of
such tensors, the flow drawn as colour-wheel images) and returns logits ``(B, K)``. Every stage
outputs a channels-first map ``(B, C, T', H', W')`` (the transformer: tokens ``(B, N, D)``), so the
analyses can read any of them.

=============  ==================================================================================
``c2d``        frame-wise 2-D CNN + temporal mean: blind to frame order by construction.
               Stages ``stem, layer1, layer2, layer3``.
``r3d``        3-D CNN with residual blocks (R3D-like). Stages ``stem, layer1, layer2, layer3``.
``slowfast``   two pathways: slow (every ``alpha``-th frame, wide) and fast (every frame,
               ``beta`` as wide), with time-strided lateral convs fast -> slow after each stage.
               Stages ``slow.stem, fast.stem, slow.layer1, fast.layer1, ... slow.layer3, fast.layer3``.
``two_stream`` RGB stream and optical-flow stream (frame-wise 2-D CNNs, the AVOS-style input of
               chapter 3) fused by a 1x1x1 conv. Stages ``rgb.layer*``, ``flow.layer*``, ``fusion``.
``vit``        video transformer: a token embedding (default the hybrid stem: R3D's first three
               stages and a projection), joint space-time multi-head self-attention over the
               tokens. Each block's ``attn.q``, ``attn.k``, ``attn.v`` are ``nn.Linear`` layers whose
               outputs ``(B, N, D)`` split into ``heads`` chunks of ``D / heads`` (one per head).
               Stages ``blocks.0 .. blocks.{depth-1}``; tokens on the grid ``(T/2, H/8, W/8)``
               (``(T/2, H/16, W/16)`` with the ``linear`` and ``conv`` embeddings).
``tubelet_vit`` video transformer with a plain tubelet embedding (a linear projection of 2x8x8
               pixel tubelets, as VideoMAE; no conv stages), separable time + space position
               embeddings, blocks as ``vit``. Stages ``blocks.0 .. blocks.{depth-1}``; grid
               ``(T/2, H/8, W/8)``.
=============  ==================================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.models.zoo import register


def _bn_relu(c: int, dims: int) -> list[nn.Module]:
    bn = nn.BatchNorm3d(c) if dims == 3 else nn.BatchNorm2d(c)
    return [bn, nn.ReLU(inplace=True)]


class FrameWise(nn.Module):
    """Applies a 2-D module to every frame: ``(B, C, T, H, W) -> (B, C', T, H', W')``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = self.module(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)


class ResBlock(nn.Module):
    """Two 3x3 convs with a residual; 2-D or 3-D. ``stride`` and ``kt`` (temporal kernel) for 3-D."""

    def __init__(self, cin: int, cout: int, stride: int | Sequence[int] = 1, dims: int = 2, kt: int = 3) -> None:
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        k = (kt, 3, 3) if dims == 3 else 3
        pad = (kt // 2, 1, 1) if dims == 3 else 1
        self.conv1 = conv(cin, cout, k, stride=stride, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm3d(cout) if dims == 3 else nn.BatchNorm2d(cout)
        self.conv2 = conv(cout, cout, k, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm3d(cout) if dims == 3 else nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if cin != cout or stride != 1:
            self.shortcut = nn.Sequential(conv(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm3d(cout) if dims == 3 else nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


def _frame_cnn(widths: Sequence[int]) -> nn.ModuleDict:
    """Stem + three strided residual stages, each applied per frame."""
    w0, w1, w2, w3 = widths
    return nn.ModuleDict({
        "stem": FrameWise(nn.Sequential(nn.Conv2d(3, w0, 5, stride=2, padding=2, bias=False), *_bn_relu(w0, 2))),
        "layer1": FrameWise(ResBlock(w0, w1, 2)),
        "layer2": FrameWise(ResBlock(w1, w2, 2)),
        "layer3": FrameWise(ResBlock(w2, w3, 2)),
    })


class C2D(nn.Module):
    """Frame-wise 2-D CNN with temporal average pooling: the output ignores frame order."""

    def __init__(self, num_classes: int, widths: Sequence[int] = (16, 32, 64, 128), dropout: float = 0.2) -> None:
        super().__init__()
        cnn = _frame_cnn(widths)
        self.stem, self.layer1, self.layer2, self.layer3 = cnn["stem"], cnn["layer1"], cnn["layer2"], cnn["layer3"]
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(widths[-1], num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer3(self.layer2(self.layer1(self.stem(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x).mean(dim=(2, 3, 4))))


class R3D(nn.Module):
    """3-D CNN: a space-time stem and three residual 3-D stages (time is halved in the last two)."""

    def __init__(self, num_classes: int, widths: Sequence[int] = (16, 32, 64, 128), dropout: float = 0.2) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = nn.Sequential(nn.Conv3d(3, w0, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2), bias=False),
                                  *_bn_relu(w0, 3))
        self.layer1 = ResBlock(w0, w1, (1, 2, 2), dims=3)
        self.layer2 = ResBlock(w1, w2, (2, 2, 2), dims=3)
        self.layer3 = ResBlock(w2, w3, (2, 2, 2), dims=3)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.dropout(x.mean(dim=(2, 3, 4))))


class Pathway(nn.Module):
    """One SlowFast pathway: a stem and three stages (inputs widened by the laterals)."""

    def __init__(self, stem: nn.Module, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.stem = stem
        self.layer1, self.layer2, self.layer3 = layers


class SlowFast(nn.Module):
    """SlowFast-like network: slow pathway on every ``alpha``-th frame, fast pathway on all frames
    with ``beta`` of the slow width; lateral time-strided convs feed fast into slow (concatenated)
    after the stem and after stages 1 and 2; the head concatenates both pooled pathways."""

    def __init__(self, num_classes: int, widths: Sequence[int] = (16, 32, 64, 128), alpha: int = 4,
                 beta: float = 0.25, dropout: float = 0.2) -> None:
        super().__init__()
        self.alpha = alpha
        slow = list(widths)
        fast = [max(2, round(w * beta)) for w in widths]
        lat = [2 * f for f in fast]  # lateral output widths (SlowFast uses 2x the fast width)

        def lateral(cin: int, cout: int) -> nn.Module:
            return nn.Conv3d(cin, cout, (5, 1, 1), stride=(alpha, 1, 1), padding=(2, 0, 0), bias=False)

        self.slow = Pathway(
            nn.Sequential(nn.Conv3d(3, slow[0], (1, 5, 5), stride=(1, 2, 2), padding=(0, 2, 2), bias=False),
                          *_bn_relu(slow[0], 3)),
            [ResBlock(slow[0] + lat[0], slow[1], (1, 2, 2), dims=3, kt=1),
             ResBlock(slow[1] + lat[1], slow[2], (1, 2, 2), dims=3, kt=3),
             ResBlock(slow[2] + lat[2], slow[3], (1, 2, 2), dims=3, kt=3)],
        )
        self.fast = Pathway(
            nn.Sequential(nn.Conv3d(3, fast[0], (5, 5, 5), stride=(1, 2, 2), padding=(2, 2, 2), bias=False),
                          *_bn_relu(fast[0], 3)),
            [ResBlock(fast[0], fast[1], (1, 2, 2), dims=3),
             ResBlock(fast[1], fast[2], (1, 2, 2), dims=3),
             ResBlock(fast[2], fast[3], (1, 2, 2), dims=3)],
        )
        self.lateral = nn.ModuleList([lateral(fast[i], lat[i]) for i in range(3)])
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(slow[3] + fast[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.slow.stem(x[:, :, :: self.alpha])
        f = self.fast.stem(x)
        for i, (slow_layer, fast_layer) in enumerate(
            [(self.slow.layer1, self.fast.layer1), (self.slow.layer2, self.fast.layer2),
             (self.slow.layer3, self.fast.layer3)]
        ):
            s = slow_layer(torch.cat([s, self.lateral[i](f)], dim=1))
            f = fast_layer(f)
        pooled = torch.cat([s.mean(dim=(2, 3, 4)), f.mean(dim=(2, 3, 4))], dim=1)
        return self.fc(self.dropout(pooled))


class TwoStream(nn.Module):
    """RGB stream + optical-flow stream (flow as colour-wheel images), fused by a 1x1x1 conv.

    ``forward((rgb, flow_rgb))`` with both ``(B, 3, T, H, W)``. The streams are frame-wise 2-D
    CNNs, as in the two-stream video object segmentation models of chapter 3.
    """

    def __init__(self, num_classes: int, widths: Sequence[int] = (16, 32, 64, 128), dropout: float = 0.2) -> None:
        super().__init__()
        self.rgb = _frame_cnn(widths)
        self.flow = _frame_cnn(widths)
        self.fusion = nn.Sequential(nn.Conv3d(2 * widths[-1], widths[-1], 1, bias=False), *_bn_relu(widths[-1], 3))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(widths[-1], num_classes)

    @staticmethod
    def _run(stream: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        for name in ("stem", "layer1", "layer2", "layer3"):
            x = stream[name](x)
        return x

    def forward(self, rgb: torch.Tensor, flow: torch.Tensor | None = None) -> torch.Tensor:
        if flow is None:  # called with one (rgb, flow) tuple
            rgb, flow = rgb
        fused = self.fusion(torch.cat([self._run(self.rgb, rgb), self._run(self.flow, flow)], dim=1))
        return self.fc(self.dropout(fused.mean(dim=(2, 3, 4))))


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate ``q``, ``k``, ``v`` projections (hookable per head)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:  # (B, N, D) -> (B, heads, N, D / heads)
            return t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: attention and an MLP, each with a residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class HybridStem(nn.Module):
    """The first three stages of :class:`R3D` (same names and shapes, so its weights can seed
    them) and a 1x1x1 projection to ``dim``: ``(B, 3, T, H, W) -> (B, dim, T/2, H/8, W/8)``."""

    def __init__(self, dim: int, widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        w0, w1, w2 = widths
        self.stem = nn.Sequential(nn.Conv3d(3, w0, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2), bias=False),
                                  *_bn_relu(w0, 3))
        self.layer1 = ResBlock(w0, w1, (1, 2, 2), dims=3)
        self.layer2 = ResBlock(w1, w2, (2, 2, 2), dims=3)
        self.proj = nn.Conv3d(w2, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.layer2(self.layer1(self.stem(x))))


class VideoTransformer(nn.Module):
    """Tubelet embedding and joint space-time attention over tokens ``(B, N, D)``.

    ``N = T' * H' * W'`` tokens in time-major order (the grid of :attr:`grid`); no CLS token: the
    head averages the tokens. Three embeddings (``stem``):

    - ``"linear"``: one linear projection of ``tubelet x patch x patch`` tubelets (ViViT/VideoMAE);
    - ``"conv"``: a 3x3x3 conv (spatial stride 2) and a strided conv to ``patch``-pixel tubelets;
    - ``"cnn"``: a hybrid stem (:class:`HybridStem`: the first three stages of ``r3d``, then a
      1x1x1 projection): tokens of 8x8 pixels and 2 frames, grid ``(T/2, H/8, W/8)``.

    Trained from scratch on a few thousand clips, the linear and conv embeddings stayed at chance on
    the motion task; the hybrid stem gives the attention blocks local motion features to work with.
    """

    def __init__(self, num_classes: int, frames: int = 16, size: int = 64, dim: int = 96, depth: int = 4,
                 heads: int = 4, patch: int = 16, tubelet: int = 2, dropout: float = 0.1,
                 conv_stem: bool = True, stem: str | None = None) -> None:
        super().__init__()
        stem = stem or ("conv" if conv_stem else "linear")
        if stem == "cnn":
            patch, tubelet = 8, 2
            self.patch_embed: nn.Module = HybridStem(dim)
        elif stem == "conv":
            half = patch // 2
            self.patch_embed = nn.Sequential(
                nn.Conv3d(3, dim // 2, 3, stride=(1, 2, 2), padding=1, bias=False), *_bn_relu(dim // 2, 3),
                nn.Conv3d(dim // 2, dim, (tubelet, half, half), stride=(tubelet, half, half)),
            )
        elif stem == "linear":
            self.patch_embed = nn.Conv3d(3, dim, (tubelet, patch, patch), stride=(tubelet, patch, patch))
        else:
            raise ValueError(f"unknown stem {stem!r}: use linear, conv or cnn")
        self.grid = (frames // tubelet, size // patch, size // patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1] * self.grid[2], dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[Block(dim, heads, dropout=dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, D), time-major
        tokens = self.blocks(self.drop(tokens + self.pos_embed))
        return self.fc(self.norm(tokens).mean(dim=1))


class TubeletTransformer(nn.Module):
    """Video transformer with a plain tubelet embedding (VideoMAE-style): no convolutional stages.

    ``(B, 3, T, H, W)`` -> a linear projection of every ``tubelet x patch x patch`` pixel tubelet
    (one strided :class:`~torch.nn.Conv3d`, i.e. a linear map of the flattened tubelet), a
    LayerNorm, separable learned position embeddings (time + space, fewer parameters than a full
    grid table: easier to fit from a few thousand clips), then ``depth`` pre-norm blocks of joint
    space-time attention (:class:`Block`: ``blocks.i.attn.q/k/v`` as in ``vit``) over tokens
    ``(B, N, D)`` in time-major order on the grid :attr:`grid` ``(T/tubelet, H/patch, W/patch)``.
    No CLS token: the head averages the tokens. Every bit of temporal reasoning beyond 2 frames
    has to go through attention.

    ``embed_init``: ``"random"`` (truncated normal, as ViT) or ``"difference"``: the same, then the first half
    of the embedding's output channels made zero-mean over the tubelet's frames, so that they start as
    temporal-difference filters (no response to anything static) and the rest as appearance filters. Only
    the starting point differs: the embedding stays one linear map, trained like every other weight.
    """

    def __init__(self, num_classes: int, frames: int = 16, size: int = 64, dim: int = 96, depth: int = 4,
                 heads: int = 4, patch: int = 8, tubelet: int = 2, mlp_ratio: float = 2.0,
                 dropout: float = 0.1, embed_init: str = "random") -> None:
        super().__init__()
        if frames % tubelet or size % patch:
            raise ValueError(f"frames {frames} and size {size} must be multiples of tubelet {tubelet} "
                             f"and patch {patch}")
        if embed_init not in ("random", "difference"):
            raise ValueError(f"unknown embed_init {embed_init!r}: use random or difference")
        self.patch_embed = nn.Conv3d(3, dim, (tubelet, patch, patch), stride=(tubelet, patch, patch))
        self.embed_norm = nn.LayerNorm(dim)
        self.grid = (frames // tubelet, size // patch, size // patch)
        t, h, w = self.grid
        self.pos_time = nn.Parameter(torch.zeros(1, t, 1, dim))
        self.pos_space = nn.Parameter(torch.zeros(1, 1, h * w, dim))
        nn.init.trunc_normal_(self.pos_time, std=0.02)
        nn.init.trunc_normal_(self.pos_space, std=0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)
        self.apply(self._init)
        if embed_init == "difference" and tubelet > 1:
            with torch.no_grad():  # weight (dim, 3, tubelet, patch, patch): zero-mean over the tubelet's frames
                w = self.patch_embed.weight[: dim // 2]
                w -= w.mean(dim=2, keepdim=True)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed_norm(self.patch_embed(x).flatten(3).transpose(1, 2).transpose(2, 3))  # (B, T', H'W', D)
        tokens = (tokens + self.pos_time + self.pos_space).flatten(1, 2)  # (B, N, D), time-major
        tokens = self.blocks(self.drop(tokens))
        return self.fc(self.norm(tokens).mean(dim=1))


ARCHS: dict[str, type[nn.Module]] = {
    "c2d": C2D,
    "r3d": R3D,
    "slowfast": SlowFast,
    "two_stream": TwoStream,
    "vit": VideoTransformer,
    "tubelet_vit": TubeletTransformer,
}
for _name, _cls in ARCHS.items():
    register(_name)(_cls)


TRANSFORMERS = ("vit", "tubelet_vit")  # token models: stages are blocks, VTCD reads attn.q/k/v


def stages(arch: str, **kwargs: Any) -> list[str]:
    """The documented stages of a zoo architecture, shallow to deep."""
    if arch in ("c2d", "r3d"):
        return ["stem", "layer1", "layer2", "layer3"]
    if arch == "slowfast":
        return [f"{p}.{n}" for n in ("stem", "layer1", "layer2", "layer3") for p in ("slow", "fast")]
    if arch == "two_stream":
        return [f"{p}.{n}" for n in ("stem", "layer1", "layer2", "layer3") for p in ("rgb", "flow")] + ["fusion"]
    if arch in TRANSFORMERS:
        return [f"blocks.{i}" for i in range(kwargs.get("depth", 4))]
    raise KeyError(arch)


def input_kind(arch: str) -> str:
    return "video+flow" if arch == "two_stream" else "video"
