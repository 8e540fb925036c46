"""Static vs. dynamic units (dissertation chapter 3, methods.md section 1).

The entry point is :func:`analyse` (one model, from a notebook or the ``static-dynamic`` job), with
its settings in :class:`StaticDynamicConfig` and its result a :class:`StaticDynamicResult` that
saves and loads itself (layout in :mod:`core.static_dynamic.store`).
"""

from core.static_dynamic.analysis import ModelResult, StaticDynamicResult, analyse
from core.static_dynamic.config import StaticDynamicConfig

__all__ = ["ModelResult", "StaticDynamicConfig", "StaticDynamicResult", "analyse"]
