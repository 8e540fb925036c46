"""Shared axes for figures laid side by side: the same builder's figures of several runs get one range per
axis, so their bars and curves compare at a glance."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go


def _numbers(values: Any) -> list[float]:
    """The finite numbers among ``values`` (strings and other categories are not numbers)."""
    if values is None:
        return []
    out = []
    for v in np.asarray(values, dtype=object).ravel().tolist():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(v):
            out.append(float(v))
    return out


def _axis_name(ref: str | None, letter: str) -> str:
    """``x2`` -> ``xaxis2``; a trace without a reference sits on the first axis."""
    ref = ref or letter
    return f"{letter}axis{ref[1:]}"


def data_ranges(fig: go.Figure, letter: str) -> dict[str, tuple[float, float]]:
    """Per axis of ``letter`` (``x`` or ``y``): the (low, high) of the numbers drawn on it, stacked bars
    summed, error bars and an explicit layout range included."""
    out: dict[str, list[float]] = {}
    stacked = fig.layout.barmode in ("stack", "relative")
    sums: dict[tuple[str, Any], float] = {}
    for tr in fig.data:
        axis = _axis_name(getattr(tr, f"{letter}axis", None), letter)
        values = _numbers(getattr(tr, letter, None))
        err = getattr(tr, f"error_{letter}", None)
        if err is not None and err.array is not None and values:
            plus = _numbers(err.array)
            minus = _numbers(err.arrayminus) if err.arrayminus is not None else plus
            values += [v + e for v, e in zip(values, plus, strict=False)]
            values += [v - e for v, e in zip(values, minus, strict=False)]
        if stacked and tr.type == "bar" and letter == ("y" if (tr.orientation or "v") == "v" else "x"):
            other = "x" if letter == "y" else "y"
            for k, v in zip(np.asarray(getattr(tr, other) if getattr(tr, other) is not None else [],
                                       dtype=object).tolist(), values, strict=False):
                sums[(axis, str(k))] = sums.get((axis, str(k)), 0.0) + v
            values = [0.0]
        if tr.type == "bar" and values:
            values.append(0.0)  # bars start at zero
        out.setdefault(axis, []).extend(values)
    for (axis, _), total in sums.items():
        out.setdefault(axis, []).append(total)
    for name in fig.layout:
        if name.startswith(f"{letter}axis"):
            rng = fig.layout[name].range
            if rng is not None and all(isinstance(r, (int, float)) for r in rng):
                out.setdefault(name, []).extend(float(r) for r in rng)
    return {k: (min(v), max(v)) for k, v in out.items() if v}


def share_axes(figs: Sequence[go.Figure], axes: str) -> None:
    """Give every figure of ``figs`` (built by one builder, so their axes correspond by name) the union
    range of each numeric axis named in ``axes`` (``"x"``, ``"y"`` or ``"xy"``); categorical axes stay."""
    if len(figs) < 2:
        return
    for letter in axes:
        ranges = [data_ranges(f, letter) for f in figs]
        names = {n for r in ranges for n in r}
        for name in names:
            spans = [r[name] for r in ranges if name in r]
            lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
            pad = 0.04 * (hi - lo) if hi > lo else 0.5
            fixed = [lo - pad if lo < 0 or lo > 0 else lo, hi + pad]
            for f, own in zip(figs, ranges, strict=True):
                if name not in own:  # an axis this figure does not draw on (fewer panels)
                    continue
                if f.layout[name].type in ("category", "multicategory"):
                    continue
                f.update_layout({name: {"range": fixed, "autorange": False}})
