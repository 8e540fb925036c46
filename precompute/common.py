"""Shared pieces of the precompute jobs: devices, model loading, progress, seeding."""

from __future__ import annotations

import os
import random
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch
from tqdm import tqdm

from core.errors import UserError
from core.models import ModelBundle, resolve_layers, resolve_model

T = TypeVar("T")

NAME_MAX = 128  # --run-id and train --name: one folder name
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_folder_name(value: str, flag: str) -> None:
    """``value`` must name one folder inside the output root: no separators, no leading dot, short
    enough for any file system."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value) or len(value) > NAME_MAX:
        shown = str(value) if len(str(value)) <= 60 else str(value)[:57] + "..."
        raise UserError(f"{flag} {shown!r}: use a name of 1 to {NAME_MAX} letters, digits, '.', '_' and '-' that "
                        "starts with a letter or digit (no '/'); it names a folder inside --out")


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
    check_forward(bundle)
    return bundle, names


@torch.no_grad()
def check_forward(bundle: ModelBundle) -> None:
    """One forward pass of a zero batch of the declared input before any work: a model that fails on
    it, or returns no logits ``(B, K)``, is refused in one line naming the spec and the input."""
    x = bundle.dummy_input(1)
    shape = " and ".join(str(tuple(t.shape)) for t in (x if isinstance(x, tuple) else (x,)))
    try:
        logits = bundle(x)
    except UserError:
        raise
    except Exception as e:  # the user's model code: any failure means the spec and the model disagree
        first = (str(e).strip().splitlines() or [""])[0]
        raise UserError(f"{bundle.spec}: a forward pass on a zero {bundle.preprocessing.input} batch {shape} "
                        f"failed ({type(e).__name__}: {first[:300]}){bundle.input_hint()}; check the input kind, "
                        "#size and #frames of the spec") from None
    if logits.ndim != 2:
        raise UserError(f"{bundle.spec}: the model returned a tensor of shape {tuple(logits.shape)} for an input "
                        f"{shape}; it must return logits (B, K)")


def memory_bytes() -> int | None:
    """Physical memory of this machine in bytes (``None`` where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(nbytes: int, what: str, advice: str) -> None:
    """Refuse, before allocating it, data that would take over 3/4 of this machine's memory."""
    total = memory_bytes()
    if total is not None and nbytes > 0.75 * total:
        raise UserError(f"{what} would need {nbytes / 2**30:.1f} GiB in memory, more than 3/4 of this machine's "
                        f"{total / 2**30:.1f} GiB; {advice}")


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """A progress bar on stderr (so stdout stays for results)."""
    return iter(tqdm(items, desc=desc, total=total, file=sys.stderr, mininterval=0.5,
                     dynamic_ncols=True, leave=False))


def batched(seq: Sequence[T], size: int) -> list[Sequence[T]]:
    return [seq[i:i + size] for i in range(0, len(seq), size)]
