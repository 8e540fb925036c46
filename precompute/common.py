"""Shared pieces of the precompute jobs: devices, model loading, progress, seeding."""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch
from tqdm import tqdm

from core.data.sources import check_memory, memory_bytes  # noqa: F401  (re-exported for the jobs)
from core.errors import UserError
from core.models.loading import check_forward, load_model, resolve_device  # noqa: F401  (re-exported)

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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """A progress bar on stderr (so stdout stays for results)."""
    return iter(tqdm(items, desc=desc, total=total, file=sys.stderr, mininterval=0.5,
                     dynamic_ncols=True, leave=False))


def batched(seq: Sequence[T], size: int) -> list[Sequence[T]]:
    return [seq[i:i + size] for i in range(0, len(seq), size)]
