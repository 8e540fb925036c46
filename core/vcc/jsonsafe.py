"""JSON has no NaN or infinity: the one place VCC results turn them into null and back."""

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


def null_to_nan(value: float | None) -> float:
    """A number written by :func:`nan_to_null` back as a float (``None``: NaN)."""
    return float("nan") if value is None else float(value)
