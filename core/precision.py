"""Numeric precision of forward passes: ``fp32`` (the default, exact), ``bf16`` or ``fp16`` autocast.

Only the model's forward passes run in reduced precision; every statistic computed from them
(features for SLIC / NMF / k-means, CRIS metrics, importance) is kept in float32 or float64. Use::

    check_precision(cfg.precision, bundle.device)        # once, early: one clear UserError if unusable
    with autocast(cfg.precision, bundle.device):
        logits = bundle(x)
    feats = to_fp32(feats)                               # before any statistic

``autocast`` is device-generic (``torch.autocast(device.type, dtype)``): the same code runs on CPU,
CUDA and any other device torch can autocast on. ``fp32`` is a no-op context, so default results are
bit-identical to code that never heard of this module.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Literal

import numpy as np
import torch

from core.errors import UserError

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(UserError):
    """A precision that is unknown or that the device cannot autocast to."""


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (None for ``fp32``); an unknown name is a :class:`PrecisionError`."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return _DTYPES.get(precision)


def check_precision(precision: str, device: torch.device | str) -> None:
    """Raise one :class:`PrecisionError` line when ``device`` cannot run forward passes in ``precision``."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return
    kind = torch.device(device).type
    available = getattr(torch.amp, "is_autocast_available", None)
    if available is not None and not available(kind):
        raise PrecisionError(f"precision {precision}: torch cannot autocast on {kind}; use --precision fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns, then silently runs in fp32, for an unsupported dtype
        try:
            with torch.autocast(kind, dtype=dtype):
                pass
        except (UserWarning, RuntimeError) as e:
            other = "bf16" if precision == "fp16" else "fp32"
            raise PrecisionError(f"precision {precision} is not supported on {kind} by this torch "
                                 f"({str(e).splitlines()[0]}); use --precision {other} or a CUDA device") from None


def autocast(precision: str, device: torch.device | str) -> AbstractContextManager[None]:
    """Context in which forward passes on ``device`` autocast to ``precision`` (``fp32``: nothing changes).

    Call :func:`check_precision` first for a clean error; here an unusable precision raises it too.
    """
    dtype = autocast_dtype(precision)
    if dtype is None:
        return nullcontext()
    check_precision(precision, device)
    return _autocast(torch.device(device).type, dtype)


@contextmanager
def _autocast(kind: str, dtype: torch.dtype) -> Iterator[None]:
    with torch.autocast(kind, dtype=dtype):
        yield


def to_fp32(x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """``x`` as float32 (a tensor stays on its device); statistics never run in reduced precision."""
    if isinstance(x, torch.Tensor):
        return x.float()
    return np.asarray(x, dtype=np.float32)
