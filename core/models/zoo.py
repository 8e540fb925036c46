"""Architectures that checkpoint folders (shipped in ``assets/models`` or trained by users) name.

A checkpoint folder holds ``model.json`` and ``model.safetensors`` (no pickles)::

    {"architecture": "<name registered here>", "kwargs": {...},
     "preprocessing": {"input": "video", "size": 112, "frames": 16, "mean": [...], "std": [...]},
     "classes": ["left", "right"], "stages": ["stem", "layer1", ...],
     "description": "...", "metrics": {"val_accuracy": 0.93}}

Register an architecture with :func:`register`; the zoo issue adds the video models.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.errors import ModelSpecError

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}

CHECKPOINT_JSON = "model.json"
CHECKPOINT_WEIGHTS = "model.safetensors"


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make ``factory(**kwargs) -> nn.Module`` loadable by architecture name."""

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        ARCHITECTURES[name] = factory
        return factory

    return deco


def build(architecture: str, kwargs: dict[str, Any], where: str = "") -> nn.Module:
    """``architecture(**kwargs)``; a constructor that rejects the kwargs is a :class:`ModelSpecError`
    (naming ``where``, e.g. the checkpoint folder, when given)."""
    at = f"{where}: " if where else ""
    if architecture not in ARCHITECTURES:
        raise ModelSpecError(f"{at}unknown architecture {architecture!r}; known: "
                             f"{', '.join(sorted(ARCHITECTURES)) or 'none'}")
    try:
        return ARCHITECTURES[architecture](**kwargs)
    except (TypeError, ValueError, RuntimeError, IndexError, KeyError) as e:
        first = (str(e).splitlines() or [""])[0]
        raise ModelSpecError(f"{at}architecture {architecture!r} rejects its kwargs {kwargs}: "
                             f"{type(e).__name__}: {first}") from None


def read_checkpoint_meta(folder: Path) -> dict[str, Any]:
    """Read and check ``model.json`` of a checkpoint folder."""
    meta_path = folder / CHECKPOINT_JSON
    if not meta_path.is_file():
        raise ModelSpecError(f"{folder} is not a checkpoint folder: no {CHECKPOINT_JSON}")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError:
        raise ModelSpecError(f"{meta_path} is not valid JSON") from None
    if not isinstance(meta, dict) or "architecture" not in meta:
        raise ModelSpecError(f"{meta_path} lacks 'architecture'")
    if not (folder / CHECKPOINT_WEIGHTS).is_file():
        raise ModelSpecError(f"{folder} has no {CHECKPOINT_WEIGHTS}")
    return meta


def save_checkpoint(model: nn.Module, folder: Path, meta: dict[str, Any], dtype: torch.dtype | None = None) -> None:
    """Write ``model.safetensors``, then ``model.json`` (its presence marks a complete checkpoint).

    ``dtype`` (e.g. ``torch.float16``) stores floating-point tensors smaller; loading casts them
    back to the model's own dtype.
    """
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        state[k] = v.contiguous()
    tmp = folder / f".{CHECKPOINT_WEIGHTS}.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, folder / CHECKPOINT_WEIGHTS)
    tmp_json = folder / f".{CHECKPOINT_JSON}.tmp"
    tmp_json.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp_json, folder / CHECKPOINT_JSON)
