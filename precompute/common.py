"""Shared pieces of the precompute jobs: devices, model loading, progress, seeding."""

from __future__ import annotations

import random
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch
from tqdm import tqdm

from core.errors import UserError
from core.models import ModelBundle, resolve_layers, resolve_model

T = TypeVar("T")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is available here; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device; use auto, cpu or cuda") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_model(spec: str, device: torch.device, layers: Sequence[str] | None = None) -> tuple[ModelBundle, list[str]]:
    """Resolve the model and check the requested layers (default: its stages) before any work."""
    bundle = resolve_model(spec, device)
    names = list(layers) if layers else list(bundle.stages)
    if not names:
        raise UserError(f"{spec}: no default layers known; pass --layers (see `python -m precompute "
                        f"layers --model {spec}`)")
    resolve_layers(bundle.model, names, spec)
    return bundle, names


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """A progress bar on stderr (so stdout stays for results)."""
    return iter(tqdm(items, desc=desc, total=total, file=sys.stderr, mininterval=0.5,
                     dynamic_ncols=True, leave=False))


def batched(seq: Sequence[T], size: int) -> list[Sequence[T]]:
    return [seq[i:i + size] for i in range(0, len(seq), size)]
