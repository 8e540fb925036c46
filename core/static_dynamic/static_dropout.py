"""StaticDropout (dissertation 3.5.2, methods.md section 1): drop the static channels before the classifier.

During training, every ``every`` iterations (default 30) the per-channel static score ``s_static`` of
the classifier's input is estimated from the current batch and its frame-shuffled copy
(:func:`unit_static_scores`, the torch twin of :func:`core.static_dynamic.scores.unit_scores`). A
fraction ``rate`` of the channels (``round(rate * C)`` of them) is then drawn without replacement
with probabilities ``softmax(s_static)`` (:func:`sample_drop_mask`) and zeroed, the survivors
multiplied by ``1 / (1 - rate)`` as in standard dropout, until the next refresh. The same mask
applies to every clip of a batch.

"The classifier's input" is the input of the model's ``fc`` (an ``nn.Linear`` fed ``(B, C)`` GAP'd
features in every zoo model), so one forward pre-hook serves every architecture. :class:`StaticDropout`
is a context manager that owns the hook and always removes it.

Choices the text leaves open:

- Dead units (zero variance over the batch and its shuffled copy, e.g. a ReLU channel that never
  fires) have no score: :func:`unit_static_scores` gives NaN, as the numpy reference does, and
  :func:`sample_drop_mask` gives them probability 0. They are only dropped when fewer live channels
  than ``round(rate * C)`` are left (then uniformly at random), so exactly ``round(rate * C)`` channels
  are always dropped.
- The two feature forwards of a refresh run with the model in eval mode (under ``no_grad``): the
  features are not perturbed by the models' own dropout (the zoo has ``nn.Dropout`` right before
  ``fc``, with independent masks for the two forwards it would shrink the covariances), nor by the
  current StaticDropout mask, and BatchNorm running statistics are not updated with shuffled clips.
  Training mode is restored module by module afterwards.
- Random draws (frame permutations, channel masks) use a CPU ``torch.Generator`` of the object, so a
  run is reproducible from :meth:`StaticDropout.reset` whatever the device. The "standard" kind uses
  ``F.dropout`` and so torch's global RNG, as ``nn.Dropout`` does.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("static", "standard", "none")


def unit_static_scores(za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
    """Per-unit score ``s[i] = Cov(i) / Var(i)`` of ``(B, C)`` features of clips and their shuffled copies.

    ``Cov(i)``: mean over the batch of ``(za - m)(zb - m)`` with ``m = (mean(za) + mean(zb)) / 2``;
    ``Var(i)``: population variance of the rows of ``[za; zb]``. Returns ``(C,)`` in the inputs' dtype
    (float32 for half precision), on their device; NaN for a unit that does not vary (dead).
    """
    if za.ndim != 2 or za.shape != zb.shape:
        raise ValueError(f"features must be two (B, C) tensors of one shape, got {tuple(za.shape)} and "
                         f"{tuple(zb.shape)}")
    if za.shape[0] < 2:
        raise ValueError(f"need at least 2 clips to estimate a covariance, got {za.shape[0]}")
    dtype = za.dtype if za.dtype in (torch.float32, torch.float64) else torch.float32
    za, zb = za.detach().to(dtype), zb.detach().to(dtype)
    mean = 0.5 * (za.mean(dim=0) + zb.mean(dim=0))
    cov = ((za - mean) * (zb - mean)).mean(dim=0)
    var = torch.cat([za, zb]).var(dim=0, correction=0)
    alive = var > 0
    return torch.where(alive, cov / torch.where(alive, var, torch.ones_like(var)), torch.full_like(var, float("nan")))


def sample_drop_mask(scores: torch.Tensor, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(C,)`` bool mask, True for the ``round(rate * C)`` channels to drop, on ``scores``' device.

    Channels are drawn without replacement (``torch.multinomial``) with probabilities
    ``softmax(scores)``; a NaN or ``-inf`` score (a dead unit) has probability 0, and such channels
    fill the quota uniformly only when the others are used up. ``generator`` must be a CPU generator
    (the ``C`` probabilities are sampled on the CPU).
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    if scores.ndim != 1:
        raise ValueError(f"scores must be (C,), got {tuple(scores.shape)}")
    c = scores.numel()
    k = round(rate * c)
    drop = torch.zeros(c, dtype=torch.bool)
    if k > 0:
        s = scores.detach().to("cpu", torch.float64)
        s = torch.where(torch.isnan(s), torch.full_like(s, float("-inf")), s)
        probs = torch.softmax(s, dim=0) if torch.isfinite(s).any() else torch.zeros_like(s)
        positive = probs > 0
        n_positive = int(positive.sum())
        if n_positive >= k:
            drop[torch.multinomial(probs, k, replacement=False, generator=generator)] = True
        else:
            drop[positive] = True
            rest = (~positive).nonzero().squeeze(1)
            pick = torch.multinomial(torch.ones(len(rest), dtype=torch.float64), k - n_positive,
                                     replacement=False, generator=generator)
            drop[rest[pick]] = True
    return drop.to(scores.device)


def _permutation(t: int, generator: torch.Generator | None) -> torch.Tensor:
    if t < 2:
        raise ValueError(f"cannot shuffle {t} frame(s): need at least 2")
    identity = torch.arange(t)
    while True:
        perm = torch.randperm(t, generator=generator)
        if not torch.equal(perm, identity):
            return perm


def shuffle_frames(x: torch.Tensor | tuple[torch.Tensor, ...], generator: torch.Generator | None = None) -> Any:
    """Clips ``(B, C, T, H, W)`` with their frames in a random order that is not the identity.

    One permutation (drawn with the CPU ``generator``) for every clip; a tuple of such tensors (the
    two-stream model's ``(rgb, flow)``) is shuffled with the same permutation throughout.
    """
    tensors = x if isinstance(x, tuple) else (x,)
    lengths = {t.shape[2] for t in tensors}
    if len(lengths) != 1:
        raise ValueError(f"the tensors have different frame counts {sorted(lengths)}")
    perm = _permutation(lengths.pop(), generator)
    out = tuple(t.index_select(2, perm.to(t.device)) for t in tensors)
    return out if isinstance(x, tuple) else out[0]


class StaticDropout:
    """Channel dropout on the input ``(B, C)`` of ``model.<head>`` (an ``nn.Linear``), as a context manager.

    ``mode``: ``"static"`` (StaticDropout), ``"standard"`` (``F.dropout`` at ``rate``: a fresh mask per
    clip and iteration) or ``"none"``. Only acts while the head is in training mode and
    :attr:`active` is true; in eval mode the model is unchanged. Call :meth:`step` with each training
    batch (``(B, 3, T, H, W)`` or a tuple of such) before its forward pass: in static mode it refreshes
    the scores and the mask on iterations ``0, every, 2 * every, ...`` counted from the last
    :meth:`reset`. Until the first refresh nothing is dropped.

    Attributes after a refresh: :attr:`scores` ``(C,)`` (NaN: dead unit) and :attr:`drop` ``(C,)`` bool.
    """

    def __init__(self, model: nn.Module, mode: str = "static", rate: float = 0.3, every: int = 30,
                 seed: int = 0, head: str = "fc") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown dropout mode {mode!r}: use one of {', '.join(MODES)}")
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        if every < 1:
            raise ValueError(f"refresh interval must be at least 1, got {every}")
        self.head = model.get_submodule(head)
        if not isinstance(self.head, nn.Linear):
            raise TypeError(f"model.{head} must be an nn.Linear, got {type(self.head).__name__}")
        self.model, self.mode, self.rate, self.every = model, mode, rate, every
        self.generator = torch.Generator()
        self.active = True
        self.scores: torch.Tensor | None = None
        self.drop: torch.Tensor | None = None
        self._handle: Any = None
        self._captured: list[torch.Tensor] | None = None
        self.reset(seed)

    def reset(self, seed: int) -> None:
        """Reseed the generator, restart the iteration count and forget the mask (e.g. at each epoch)."""
        self.generator.manual_seed(seed)
        self.iteration = 0
        self.scores = self.drop = None

    def __enter__(self) -> StaticDropout:
        if self._handle is not None:
            raise RuntimeError("StaticDropout is already active")
        self._handle = self.head.register_forward_pre_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def step(self, batch: Any) -> None:
        """Count one training iteration; in static mode refresh the mask every ``every`` of them."""
        if self.mode == "static" and self.active and self.rate > 0 and self.iteration % self.every == 0:
            self.refresh(batch)
        self.iteration += 1

    @torch.no_grad()
    def refresh(self, batch: Any) -> None:
        """Scores from ``batch`` and its frame-shuffled copy, then a new mask (skipped for a batch of 1)."""
        za = self.features(batch)
        zb = self.features(shuffle_frames(batch, self.generator))
        if za.shape[0] < 2:
            return
        self.scores = unit_static_scores(za, zb)
        self.drop = sample_drop_mask(self.scores, self.rate, self.generator)

    @torch.no_grad()
    def features(self, batch: Any) -> torch.Tensor:
        """The head's input ``(B, C)`` for ``batch``, the model in eval mode (its modes restored after)."""
        modes = [(m, m.training) for m in self.model.modules()]
        self._captured = []
        handle = None if self._handle is not None else self.head.register_forward_pre_hook(self._hook)
        try:
            self.model.eval()
            self.model(*batch) if isinstance(batch, tuple) else self.model(batch)
            return self._captured[0]
        finally:
            self._captured = None
            if handle is not None:
                handle.remove()
            for m, training in modes:
                m.training = training

    def _hook(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        x = args[0]
        if self._captured is not None:
            self._captured.append(x.detach())
            return None
        if not (module.training and self.active) or self.rate == 0 or self.mode == "none":
            return None
        if self.mode == "standard":
            return (F.dropout(x, self.rate, training=True), *args[1:])
        if self.drop is None:
            return None
        keep = (~self.drop).to(device=x.device, dtype=x.dtype) / (1.0 - self.rate)
        return (x * keep, *args[1:])

    def settings(self) -> dict[str, Any]:
        """What to record in a checkpoint's metadata."""
        return {"kind": self.mode, "rate": self.rate, "every": self.every if self.mode == "static" else None,
                "layer": "input of fc"}
