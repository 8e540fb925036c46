"""JSON has no NaN or infinity: the one place results turn them into null and back.

Every writer of run JSON goes through these (directly, or through ``core.artifacts``'s JSON encoder for numpy
values), so a run's JSON files are strict JSON that any reader (a browser, ``jq``) accepts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def nan_to_null(value: Any) -> Any:
    """``value`` with every non-finite float (also inside dicts, lists, tuples and arrays) as ``None``."""
    if isinstance(value, dict):
        return {k: nan_to_null(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return nan_to_null(value.tolist())
    if isinstance(value, (list, tuple)):
        return [nan_to_null(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def num(value: Any) -> float | None:
    """One number as a float for JSON (ints and numpy scalars too), ``None`` for NaN and infinities."""
    v = float(value)
    return v if math.isfinite(v) else None


def null_to_nan(value: float | None) -> float:
    """A number written by :func:`nan_to_null` or :func:`num` back as a float (``None``: NaN)."""
    return float("nan") if value is None else float(value)
