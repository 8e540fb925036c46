"""One context manager for temporary forward hooks, shared by every analysis."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from torch import nn

HookSpec = tuple[nn.Module, Callable[..., Any]] | tuple[nn.Module, Callable[..., Any], bool]


@contextmanager
def hooks(pairs: Sequence[HookSpec]) -> Iterator[None]:
    """Register forward hooks ``(module, fn)`` and, with ``(module, fn, True)``, forward pre-hooks for
    the ``with`` block only; every registered hook is removed on exit, also when the block (or a later
    registration) raises."""
    handles = []
    try:
        for module, fn, *rest in pairs:
            pre = bool(rest and rest[0])
            handles.append(module.register_forward_pre_hook(fn) if pre else module.register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()
