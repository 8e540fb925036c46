"""Batch sizes that fit device memory: start at a size, halve on out-of-memory, never below 1.

Use :class:`BatchSize` when many calls share one device (the size that fitted is remembered, so only
the first call pays for the failed tries)::

    bs = BatchSize(cfg.batch_size, what="CRIS masks", device=bundle.device)
    outs = bs.run(n_items, lambda start, stop: forward(items[start:stop]))   # list, one per chunk

or :func:`run_batched` for a one-off loop. ``fn(start, stop)`` must be safe to call again on the same
range after an out-of-memory error (no side effects before it returns). When even a batch of 1 runs out
of memory, one :class:`BatchMemoryError` line says what to do. :func:`auto_batch_size` turns a
per-item memory estimate and the device's free memory into a starting size.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TypeVar

import torch

from core.errors import UserError

T = TypeVar("T")


class BatchMemoryError(UserError):
    """Out of memory even with batches of one item."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's out-of-memory errors on any device (``torch.OutOfMemoryError``, which
    ``torch.cuda.OutOfMemoryError`` is, a ``RuntimeError`` whose message says out of memory, as CPU
    allocators and older torch raise, and Python's ``MemoryError``)."""
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    if isinstance(exc, (oom, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def release_memory(device: torch.device | str | None = None) -> None:
    """Give cached blocks back after an out-of-memory error (CUDA's caching allocator; a no-op elsewhere,
    where a full garbage collection would cost a second on a large heap and free nothing of the device's)."""
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


class BatchSize:
    """A batch size that halves on out-of-memory and remembers what fitted.

    ``start``: the first size tried (at least 1); ``what``: named in the error (e.g. ``"CRIS masks"``);
    ``device``: whose cache is emptied after an out-of-memory error. ``size`` is the current size and
    ``backoffs`` how many times it was halved.
    """

    def __init__(self, start: int, what: str = "items", device: torch.device | str | None = None) -> None:
        if isinstance(start, bool) or not isinstance(start, int) or start < 1:
            raise ValueError(f"batch size must be a whole number of at least 1, not {start!r}")
        self.size = start
        self.what = what
        self.device = device
        self.backoffs = 0

    def shrink(self, exc: BaseException) -> None:
        """Halve the size after ``exc`` (an out-of-memory error); at size 1 raise :class:`BatchMemoryError`."""
        release_memory(self.device)
        if self.size <= 1:
            raise BatchMemoryError(
                f"out of memory with a batch of 1 ({self.what}) on {self.device or 'the device'}: use a smaller "
                "model input, fewer layers, --precision bf16, or a device with more memory") from exc
        self.size = max(1, self.size // 2)
        self.backoffs += 1

    def run(self, n: int, fn: Callable[[int, int], T]) -> list[T]:
        """``[fn(start, stop), ...]`` over ``range(n)`` in consecutive chunks of at most :attr:`size` items,
        retrying a chunk at half the size when it runs out of memory (other errors propagate)."""
        out: list[T] = []
        start = 0
        while start < n:
            stop = min(n, start + self.size)
            try:
                result = fn(start, stop)
            except Exception as e:  # only out-of-memory errors are retried
                if not is_out_of_memory(e):
                    raise
                self.shrink(e)
                continue
            out.append(result)
            start = stop
        return out


def run_batched(n: int, batch_size: int, fn: Callable[[int, int], T], what: str = "items",
                device: torch.device | str | None = None) -> list[T]:
    """:meth:`BatchSize.run` with a fresh :class:`BatchSize` starting at ``batch_size``."""
    return BatchSize(batch_size, what, device).run(n, fn)


def free_memory_bytes(device: torch.device | str) -> int | None:
    """Free memory of ``device`` in bytes (CUDA: ``torch.cuda.mem_get_info``); None when unknown (CPU)."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free)
    return None


def auto_batch_size(per_item_bytes: float, device: torch.device | str, cap: int, headroom: float = 0.8) -> int:
    """A starting batch size: ``headroom`` of the device's free memory over ``per_item_bytes``, within
    1 .. ``cap``; ``cap`` when the free memory is unknown (CPU: :class:`BatchSize` backs off if needed)."""
    free = free_memory_bytes(device)
    if free is None or per_item_bytes <= 0:
        return max(1, int(cap))
    return max(1, min(int(cap), int(free * headroom // per_item_bytes)))
