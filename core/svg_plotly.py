"""A plotly figure drawn as a static SVG on the server, for the dashboard's light mode.

Covers what the dashboard's secondary figures use: subplots (axis domains), ``scatter`` (lines with gaps,
markers, ``fill="toself"`` bands, text), ``bar`` (vertical or horizontal; grouped, stacked or overlaid),
``heatmap``, line and rectangle shapes (``add_vline``/``add_hline``), paper annotations (subplot titles),
the legend and the title. Hover text becomes each mark's ``<title>`` tooltip. Anything else (a trace type
not listed) is left out and named in a note under the figure, so nothing is dropped silently; the
interactive mode shows the plotly figure itself. Every label is taken as plain text (plotly's HTML tags
and entities removed) and escaped again by :mod:`core.svg_charts`. Pure.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from core.svg_charts import GRID, INK, MUTED, Canvas, color_at, esc, nice_ticks, short, tick_text

WIDTH = 900
PALETTE = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880"]
DASHES = {"dash": "6 4", "dot": "2 3", "dashdot": "6 3 2 3", "longdash": "10 4"}
SUPPORTED = {"scatter", "bar", "heatmap"}


def plain(text: Any) -> str:
    """A plotly label as plain text: ``<br>`` to a space, other tags dropped, entities decoded."""
    s = re.sub(r"<br\s*/?>", " ", str(text or ""), flags=re.I)
    return html.unescape(re.sub(r"<[^>]+>", "", s)).strip()


def _values(v: Any) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, np.ndarray):
        return v.tolist()
    return list(v)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    return _is_num(v) and math.isfinite(float(v))


class _Axis:
    """One axis: numeric (range) or categorical (names in order)."""

    def __init__(self, spec: Any):
        self.spec = spec
        self.cats: list[str] = []
        self.lo, self.hi = math.inf, -math.inf
        self.reversed = getattr(spec, "autorange", None) == "reversed"
        self.fixed = tuple(spec.range) if spec is not None and spec.range is not None else None
        self.tight = False
        order = getattr(spec, "categoryarray", None)
        if order is not None and getattr(spec, "categoryorder", None) == "array":
            self.cats = [str(c) for c in order]

    def add(self, values: Sequence[Any]) -> None:
        for v in values:
            if v is None:
                continue
            if _is_num(v):
                if math.isfinite(float(v)):
                    self.lo, self.hi = min(self.lo, float(v)), max(self.hi, float(v))
            elif str(v) not in self.cats:
                self.cats.append(str(v))

    @property
    def categorical(self) -> bool:
        return bool(self.cats) and not math.isfinite(self.lo)

    def limits(self, pad: float = 0.04) -> tuple[float, float]:
        if self.categorical:
            return -0.5, len(self.cats) - 0.5
        if self.fixed is not None and all(_finite(v) for v in self.fixed):
            return float(self.fixed[0]), float(self.fixed[1])
        lo, hi = (self.lo, self.hi) if math.isfinite(self.lo) else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        span = hi - lo
        return (lo, hi) if self.tight else (lo - pad * span, hi + pad * span)

    def pos(self, v: Any) -> float | None:
        if v is None:
            return None
        if self.categorical or not _is_num(v):
            return float(self.cats.index(str(v))) if str(v) in self.cats else None
        return float(v) if math.isfinite(float(v)) else None


def _axis_names(trace: Any) -> tuple[str, str]:
    return getattr(trace, "xaxis", None) or "x", getattr(trace, "yaxis", None) or "y"


def _layout_axis(fig: go.Figure, name: str) -> Any:
    key = ("xaxis" if name[0] == "x" else "yaxis") + name[1:]
    return fig.layout[key] if key in fig.layout else None  # noqa: SIM401 (layout has no .get)


def _colors(spec: Any, n: int, default: str) -> list[str]:
    """A per-point colour list from a plotly colour (scalar or array)."""
    if spec is None:
        return [default] * n
    if isinstance(spec, str):
        return [spec] * n
    vals = _values(spec)
    if vals and all(isinstance(v, str) for v in vals):
        return [vals[i % len(vals)] for i in range(n)]
    return [default] * n


def _tick_format(spec: Any) -> Any:
    fmt = getattr(spec, "tickformat", None) if spec is not None else None
    if fmt and fmt.endswith("%"):
        digits = int(re.sub(r"\D", "", fmt) or 0)
        return lambda v: f"{v:.{digits}%}"
    return None


def to_svg(fig: go.Figure, width: int = WIDTH, label: str = "figure") -> str:
    """``fig`` as one SVG string (see the module docstring for what is drawn)."""
    lay = fig.layout
    height = int(lay.height or 450)
    m = lay.margin
    legend_items: list[tuple[str, str]] = []
    seen_groups: set[str] = set()
    skipped = sorted({t.type for t in fig.data if t.type not in SUPPORTED})
    for k, t in enumerate(fig.data):
        if t.type not in SUPPORTED or t.showlegend is False or not t.name:
            continue
        if t.type == "scatter" and t.showlegend is None and len(fig.data) == 1:
            continue
        group = t.legendgroup or t.name
        if group in seen_groups:
            continue
        seen_groups.add(group)
        color = _trace_color(t, k)
        legend_items.append((plain(t.name), color))
    title = plain(lay.title.text) if lay.title and lay.title.text else ""
    legend_rows = _legend_rows([(short(n, 48), col) for n, col in legend_items], width - 90)
    top = (m.t if m.t is not None else 40) + 20 * len(legend_rows) + (22 if title else 0)
    labels = [str(v) for t in fig.data if t.type in SUPPORTED and _axis_names(t)[1] == "y"
              for v in _values(t.y) if isinstance(v, str)]
    left = (m.l if m.l is not None else 10) + max(62, min(200, 16 + 6.4 * max((len(plain(v)) for v in labels),
                                                                             default=0)))
    right = (m.r if m.r is not None else 10) + (60 if any(t.type == "heatmap" for t in fig.data) else 14)
    bottom = (m.b if m.b is not None else 10) + 46
    note_h = 20 if skipped else 0
    c = Canvas(width, height + note_h, label)
    if title:
        c.text(10, 20, title, size=14, weight="600")
    for k, row in enumerate(legend_rows):
        c.legend(left, 20 + (22 if title else 0) + 20 * k, row, size=11)
    area = (left, top, width - left - right, height - top - bottom)

    pairs = list(dict.fromkeys(_axis_names(t) for t in fig.data if t.type in SUPPORTED))
    axes: dict[str, _Axis] = {}
    names = list(dict.fromkeys(n for pair in pairs for n in pair))
    for name in names:
        spec = _layout_axis(fig, name)
        if not getattr(spec, "matches", None):
            axes[name] = _Axis(spec)
    for name in names:  # an axis that matches another shares its range and categories (shared_yaxes=True)
        if name not in axes:
            target = _layout_axis(fig, name).matches
            axes[name] = axes.get(target) or axes.setdefault(target, _Axis(_layout_axis(fig, target)))
    stack = lay.barmode in ("stack", "relative")
    for t in fig.data:
        if t.type not in SUPPORTED:
            continue
        xa, ya = _axis_names(t)
        xs, ys = _values(t.x), _values(t.y)
        if t.type == "bar":
            horizontal = t.orientation == "h"
            value_axis, cat_axis = (axes[xa], axes[ya]) if horizontal else (axes[ya], axes[xa])
            values = xs if horizontal else ys
            cat_axis.add(ys if horizontal else xs)
            value_axis.add([0.0])
            value_axis.add(values)
            if stack:
                value_axis.add([_stack_total(fig, t, horizontal)])
            if not horizontal and t.width is not None and xs and all(_is_num(v) for v in xs):
                w = _values(t.width) if not _is_num(t.width) else [t.width] * len(xs)
                axes[xa].add([float(x) - float(wi) / 2 for x, wi in zip(xs, w, strict=False)])
                axes[xa].add([float(x) + float(wi) / 2 for x, wi in zip(xs, w, strict=False)])
        elif t.type == "heatmap":
            z = np.asarray(_values(t.z), dtype=object)
            for axis, vals in ((axes[xa], xs or list(range(z.shape[1] if z.ndim == 2 else 0))),
                               (axes[ya], ys or list(range(z.shape[0] if z.ndim > 0 else 0)))):
                axis.add(vals)
                axis.add([float(v) + d for v in vals if _finite(v) for d in (-0.5, 0.5)])
                axis.tight = True
        else:
            axes[xa].add(xs)
            axes[ya].add(ys)
            for err, axis, base in ((t.error_x, axes[xa], xs), (t.error_y, axes[ya], ys)):
                lo_hi = _error_bounds(err, base)
                if lo_hi is not None:
                    axis.add([v for pair in lo_hi for v in pair if v is not None])
    # shapes and annotations placed in data coordinates also widen their axes
    for sh in lay.shapes or ():
        if sh.xref in axes and sh.x0 is not None:
            axes[sh.xref].add([sh.x0, sh.x1])
        if sh.yref in axes and sh.y0 is not None:
            axes[sh.yref].add([sh.y0, sh.y1])

    frames: dict[tuple[str, str], tuple[float, float, float, float]] = {}
    for xa, ya in pairs:
        xs_spec, ys_spec = _layout_axis(fig, xa), _layout_axis(fig, ya)
        dx = tuple(xs_spec.domain) if xs_spec is not None and xs_spec.domain else (0.0, 1.0)
        over = getattr(ys_spec, "overlaying", None) if ys_spec is not None else None
        if over and over.startswith("y"):
            base_spec = _layout_axis(fig, over)
            ys_dom = base_spec.domain if base_spec is not None else None
        else:
            ys_dom = ys_spec.domain if ys_spec is not None else None
        dy = tuple(ys_dom) if ys_dom else (0.0, 1.0)
        x0, y0, w, h = area
        box = (x0 + dx[0] * w, y0 + (1 - dy[1]) * h, (dx[1] - dx[0]) * w, (dy[1] - dy[0]) * h)
        frames[(xa, ya)] = box
        _draw_axes(c, box, axes[xa], axes[ya], xs_spec, ys_spec, right_side=bool(over))

    def mapper(xa: str, ya: str):
        (bx, by, bw, bh), ax, ay = frames[(xa, ya)], axes[xa], axes[ya]
        (xlo, xhi), (ylo, yhi) = ax.limits(), ay.limits()

        def px(v: Any) -> float | None:
            p = ax.pos(v)
            if p is None:
                return None
            f = (p - xlo) / ((xhi - xlo) or 1)
            return bx + (1 - f if ax.reversed else f) * bw

        def py(v: Any) -> float | None:
            p = ay.pos(v)
            if p is None:
                return None
            f = (p - ylo) / ((yhi - ylo) or 1)
            return by + (f if ay.reversed else 1 - f) * bh

        return px, py

    offsets: dict[tuple[str, str, str, bool], dict[Any, float]] = {}
    bar_traces = [t for t in fig.data if t.type == "bar"]
    for k, t in enumerate(fig.data):
        if t.type not in SUPPORTED:
            continue
        xa, ya = _axis_names(t)
        px, py = mapper(xa, ya)
        color = _trace_color(t, k)
        if t.type == "scatter":
            _draw_scatter(c, t, px, py, color)
        elif t.type == "bar":
            group = [b for b in bar_traces if _axis_names(b) == (xa, ya) and b.orientation == t.orientation]
            _draw_bar(c, t, px, py, color, axes, frames[(xa, ya)], stack, lay.barmode, group, offsets)
        else:
            _draw_heatmap(c, t, px, py, frames[(xa, ya)])
    for sh in lay.shapes or ():
        _draw_shape(c, sh, frames, mapper, area)
    for an in lay.annotations or ():
        _draw_annotation(c, an, frames, mapper, area)
    if skipped:
        c.text(10, height + 14, f"Not drawn here: {', '.join(skipped)} (switch the sidebar's Charts to interactive).",
               size=11, color=MUTED)
    return c.svg()


def _trace_color(t: Any, k: int) -> str:
    if t.type == "scatter":
        mode = t.mode or "lines+markers"
        if "lines" in mode and t.line and isinstance(t.line.color, str):
            return t.line.color
        if t.marker and isinstance(t.marker.color, str):
            return t.marker.color
        if t.fillcolor:
            return t.fillcolor
    if t.type == "bar" and t.marker and isinstance(t.marker.color, str):
        return t.marker.color
    return PALETTE[k % len(PALETTE)]


def _stack_total(fig: go.Figure, trace: Any, horizontal: bool) -> float:
    """The largest stacked total at any category of the bars on ``trace``'s axes."""
    totals: dict[str, float] = {}
    for t in fig.data:
        if t.type != "bar" or _axis_names(t) != _axis_names(trace):
            continue
        cats, vals = (_values(t.y), _values(t.x)) if horizontal else (_values(t.x), _values(t.y))
        for cat, v in zip(cats, vals, strict=False):
            if _finite(v) and v > 0:
                totals[str(cat)] = totals.get(str(cat), 0.0) + float(v)
    return max(totals.values(), default=0.0)


def _draw_axes(c: Canvas, box: tuple[float, float, float, float], ax: _Axis, ay: _Axis, xs: Any, ys: Any,
               right_side: bool = False) -> None:
    """Ticks, labels and titles of one subplot; ``right_side``: a y axis overlaid on another (its ticks on the
    right, no grid, the x axis already drawn)."""
    bx, by, bw, bh = box
    (xlo, xhi), (ylo, yhi) = ax.limits(), ay.limits()
    xvis = xs is None or xs.visible is not False
    yvis = ys is None or ys.visible is not False
    ylabels = ys is None or ys.showticklabels is not False
    xlabels = xs is None or xs.showticklabels is not False
    if yvis:
        if ay.categorical:
            for i, name in enumerate(ay.cats if ylabels else []):
                f = (i - ylo) / ((yhi - ylo) or 1)
                y = by + (f if ay.reversed else 1 - f) * bh
                c.text(bx - 6, y + 4, short(plain(name), 24), size=11, anchor="end", color=MUTED, tip=plain(name))
        else:
            fmt = _tick_format(ys)
            ticks = nice_ticks(ylo, yhi, max(2, int(bh // 45)))
            step = (ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
            for t in ticks:
                f = (t - ylo) / ((yhi - ylo) or 1)
                y = by + (f if ay.reversed else 1 - f) * bh
                label = (fmt(t) if fmt else tick_text(t, step)) if ylabels else ""
                if right_side:
                    c.text(bx + bw + 6, y + 4, label, size=11, color=MUTED)
                else:
                    c.line(bx, y, bx + bw, y, GRID)
                    c.text(bx - 6, y + 4, label, size=11, anchor="end", color=MUTED)
        ytitle = plain(ys.title.text) if ys is not None and ys.title and ys.title.text else ""
        if ytitle:
            x = bx + bw + 44 if right_side else bx - 48
            c.text(x, by + bh / 2, short(ytitle, 60), size=12, anchor="middle", rotate=90 if right_side else -90,
                   color=INK)
    if xvis and not right_side:
        base = by + bh
        c.line(bx, base, bx + bw, base, "#8a8a93")
        if ax.categorical and xlabels:
            n = len(ax.cats)
            rotate = n > 6 or max((len(x) for x in ax.cats), default=0) * n * 6.5 > bw
            for i, name in enumerate(ax.cats):
                f = (i - xlo) / ((xhi - xlo) or 1)
                x = bx + (1 - f if ax.reversed else f) * bw
                if rotate:
                    c.text(x + 3, base + 12, short(plain(name), 14), size=10, anchor="end", rotate=-45, color=MUTED,
                           tip=plain(name))
                else:
                    c.text(x, base + 16, short(plain(name), 20), size=11, anchor="middle", color=MUTED)
        elif not ax.categorical:
            fmt = _tick_format(xs)
            ticks = nice_ticks(xlo, xhi, max(2, int(bw // 80)))
            step = (ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
            for t in ticks:
                f = (t - xlo) / ((xhi - xlo) or 1)
                x = bx + (1 - f if ax.reversed else f) * bw
                c.line(x, base, x, base + 4, "#8a8a93")
                c.text(x, base + 16, fmt(t) if fmt else tick_text(t, step), size=11, anchor="middle", color=MUTED)
        xtitle = plain(xs.title.text) if xs is not None and xs.title and xs.title.text else ""
        rotated = ax.categorical and (len(ax.cats) > 6 or max((len(x) for x in ax.cats), default=0) * len(ax.cats)
                                      * 6.5 > bw)
        if xtitle:
            c.text(bx + bw / 2, base + (76 if rotated else 36), short(xtitle, 90), size=12, anchor="middle")
        if rotated:
            c.height = max(c.height, base + 86)


def _tips(t: Any, n: int, xs: list[Any], ys: list[Any]) -> list[str]:
    hover = t.hovertext if t.hovertext is not None else t.text
    if hover is not None and not isinstance(hover, str):
        vals = _values(hover)
        if len(vals) == n:
            return [plain(v) for v in vals]
    name = plain(t.name) if t.name else ""

    def fmt(v: Any) -> str:
        return f"{float(v):.4g}" if _is_num(v) else plain(v)

    return [(f"{name}: " if name else "") + f"{fmt(x)}, {fmt(y)}" for x, y in zip(xs, ys, strict=False)]


def _draw_scatter(c: Canvas, t: Any, px, py, color: str) -> None:
    xs, ys = _values(t.x), _values(t.y)
    if not ys and xs:
        ys = list(range(len(xs)))
    if not xs and ys:
        xs = list(range(len(ys)))
    mode = t.mode or ("lines+markers" if len(xs) < 20 else "lines")
    pts = [(px(x), py(y)) for x, y in zip(xs, ys, strict=False)]
    if t.fill == "toself":
        poly = [p for p in pts if p[0] is not None and p[1] is not None]
        if len(poly) > 2:
            fill = t.fillcolor or color
            c.raw(f'<polygon points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in poly)}" fill="{esc(fill)}" '
                  f'stroke="none" fill-opacity="{0.25 if not t.fillcolor else 1}"/>')
    if "lines" in mode:
        width = float(t.line.width) if t.line and t.line.width is not None else 2.0
        dash = DASHES.get(t.line.dash) if t.line and t.line.dash else None
        segment: list[tuple[float, float]] = []
        runs = []
        for p in pts:
            if p[0] is None or p[1] is None:
                if len(segment) > 1:
                    runs.append(segment)
                segment = []
            else:
                segment.append(p)
        if len(segment) > 1:
            runs.append(segment)
        for seg in runs:
            pts_text = " ".join(f"{x:.1f},{y:.1f}" for x, y in seg)
            dash_attr = f' stroke-dasharray="{esc(dash)}"' if dash else ""
            c.raw(f'<polyline points="{pts_text}" fill="none" stroke="{esc(color)}" stroke-width="{width:.1f}"'
                  f'{dash_attr} stroke-linejoin="round"/>')
    for err, horizontal in ((t.error_x, True), (t.error_y, False)):
        bounds = _error_bounds(err, xs if horizontal else ys)
        if bounds is None:
            continue
        ecolor = err.color or "#888"
        for (x, y), (lo, hi) in zip(pts, bounds, strict=False):
            if x is None or y is None or lo is None or hi is None:
                continue
            if horizontal:
                a, b = px(lo), px(hi)
                if a is not None and b is not None:
                    c.line(a, y, b, y, ecolor, 1.5)
                    c.line(a, y - 4, a, y + 4, ecolor, 1.5)
                    c.line(b, y - 4, b, y + 4, ecolor, 1.5)
            else:
                a, b = py(lo), py(hi)
                if a is not None and b is not None:
                    c.line(x, a, x, b, ecolor, 1.5)
                    c.line(x - 4, a, x + 4, a, ecolor, 1.5)
                    c.line(x - 4, b, x + 4, b, ecolor, 1.5)
    if "markers" in mode:
        size = t.marker.size if t.marker and _is_num(t.marker.size) else 6
        colors = _colors(t.marker.color if t.marker else None, len(pts), color)
        symbol = str(t.marker.symbol or "") if t.marker else ""
        tips = _tips(t, len(pts), xs, ys)
        for (x, y), col, tip in zip(pts, colors, tips, strict=False):
            if x is None or y is None:
                continue
            if "open" in symbol:
                c.circle(x, y, size / 2, "none", stroke=col, stroke_width=2, tip=tip)
            else:
                c.circle(x, y, max(size / 2, 2), col, tip=tip)
    if "text" in mode and t.text is not None:
        texts = [t.text] * len(pts) if isinstance(t.text, str) else _values(t.text)
        for (x, y), s in zip(pts, texts, strict=False):
            if x is not None and y is not None and s:
                c.text(x, y + 4, short(plain(s), 30), size=11, anchor="middle")


def _draw_bar(c: Canvas, t: Any, px, py, color: str, axes: dict[str, _Axis], box, stack: bool, barmode: str | None,
              group: list[Any], offsets: dict) -> None:
    horizontal = t.orientation == "h"
    xs, ys = _values(t.x), _values(t.y)
    cats, vals = (ys, xs) if horizontal else (xs, ys)
    xa, ya = _axis_names(t)
    cat_axis = axes[ya] if horizontal else axes[xa]
    lo, hi = cat_axis.limits()
    span_px = box[3] if horizontal else box[2]
    unit_px = span_px / ((hi - lo) or 1)
    widths = _values(t.width) if t.width is not None and not _is_num(t.width) else None
    n_group = len(group) if barmode == "group" else 1
    slot = group.index(t) if barmode == "group" and t in group else 0
    colors = _colors(t.marker.color if t.marker else None, len(cats), color)
    tips = _tips(t, len(cats), xs, ys)
    for i, (cat, v) in enumerate(zip(cats, vals, strict=False)):
        if not _finite(v):
            continue
        pos = cat_axis.pos(cat)
        if pos is None:
            continue
        w_data = float(widths[i]) if widths else (float(t.width) if _is_num(t.width) else 0.8)
        w_px = w_data * unit_px / n_group * (0.95 if widths else 1.0)
        start = 0.0
        if stack:
            key = (xa, ya, str(cat), float(v) >= 0)
            start = offsets.setdefault(key, {}).get("v", 0.0)
            offsets[key]["v"] = start + float(v)
        if horizontal:
            y_center = py(cat)
            x0, x1 = px(start), px(start + float(v))
            if y_center is None or x0 is None or x1 is None:
                continue
            y_top = y_center - w_px * n_group / 2 + slot * w_px
            c.rect(min(x0, x1), y_top, abs(x1 - x0), w_px * 0.98, colors[i], tip=tips[i])
        else:
            x_center = px(cat)
            y0, y1 = py(start), py(start + float(v))
            if x_center is None or y0 is None or y1 is None:
                continue
            x_left = x_center - w_px * n_group / 2 + slot * w_px
            c.rect(x_left, min(y0, y1), w_px * 0.98, abs(y1 - y0), colors[i], tip=tips[i])


def _draw_heatmap(c: Canvas, t: Any, px, py, box) -> None:
    z = np.array([[np.nan if v is None else float(v) for v in row] for row in _values(t.z)], dtype=np.float64)
    if z.ndim != 2 or not z.size:
        return
    xs = _values(t.x) or list(range(z.shape[1]))
    ys = _values(t.y) or list(range(z.shape[0]))
    finite = z[np.isfinite(z)]
    zmin = float(t.zmin) if t.zmin is not None else (float(finite.min()) if finite.size else 0.0)
    zmax = float(t.zmax) if t.zmax is not None else (float(finite.max()) if finite.size else 1.0)
    scale = "RdBu_r" if t.zmid is not None else "Viridis"
    if isinstance(t.colorscale, str):
        scale = t.colorscale
    elif t.colorscale is not None:
        scale = [[float(a), b] for a, b in t.colorscale]  # type: ignore[assignment]
    texts = _values(t.text) if t.text is not None and not isinstance(t.text, str) else None
    def span(pos, v: Any, n: int, size: float) -> float:
        if _finite(v):
            a, b = pos(float(v) - 0.5), pos(float(v) + 0.5)
            if a is not None and b is not None:
                return abs(b - a)
        return size / max(n, 1)

    cw = span(px, xs[0], len(xs), box[2])
    ch = span(py, ys[0], len(ys), box[3])
    for i, yv in enumerate(ys):
        for j, xv in enumerate(xs):
            v = z[i, j] if i < z.shape[0] and j < z.shape[1] else np.nan
            cx, cy = px(xv), py(yv)
            if cx is None or cy is None:
                continue
            f = (v - zmin) / ((zmax - zmin) or 1)
            fill = "#f0f0f2" if not math.isfinite(v) else (
                color_at(scale, f) if isinstance(scale, str) else _sample(scale, f))
            tip = f"{plain(yv)} · {plain(xv)}: " + ("—" if not math.isfinite(v) else f"{v:.4g}")
            c.rect(cx - cw / 2, cy - ch / 2, cw, ch, fill, stroke="white", tip=tip)
            if texts and i < len(texts) and j < len(texts[i]) and texts[i][j]:
                c.text(cx, cy + 4, str(texts[i][j]), size=10, anchor="middle",
                       color="white" if math.isfinite(v) and abs(f - 0.5) > 0.3 else INK)


def _sample(scale: list[list[Any]], f: float) -> str:
    from plotly.colors import sample_colorscale

    return sample_colorscale(scale, [min(max(f, 0.0), 1.0) if math.isfinite(f) else 0.5])[0]


def _ref_pos(ref: str, v: Any, frames, mapper, area, horizontal: bool) -> float | None:
    """A shape/annotation coordinate in px: data (``x2``), axis domain (``x2 domain``) or paper."""
    if v is None:
        return None
    ref = ref or "paper"
    x0, y0, w, h = area
    if ref == "paper":
        return x0 + float(v) * w if horizontal else y0 + (1 - float(v)) * h
    name = ref.split()[0]
    pair = next((p for p in frames if (p[0] if horizontal else p[1]) == name), None)
    if pair is None:
        return None
    bx, by, bw, bh = frames[pair]
    if ref.endswith("domain"):
        return bx + float(v) * bw if horizontal else by + (1 - float(v)) * bh
    px, py = mapper(*pair)
    return px(v) if horizontal else py(v)


def _draw_shape(c: Canvas, sh: Any, frames, mapper, area) -> None:
    x0 = _ref_pos(sh.xref, sh.x0, frames, mapper, area, True)
    x1 = _ref_pos(sh.xref, sh.x1, frames, mapper, area, True)
    y0 = _ref_pos(sh.yref, sh.y0, frames, mapper, area, False)
    y1 = _ref_pos(sh.yref, sh.y1, frames, mapper, area, False)
    if None in (x0, x1, y0, y1):
        return
    color = (sh.line.color if sh.line and sh.line.color else "#444")
    width = float(sh.line.width) if sh.line and sh.line.width is not None else 1.0
    dash = DASHES.get(sh.line.dash) if sh.line and sh.line.dash else None
    if sh.type == "line":
        c.line(x0, y0, x1, y1, color, width, dash=dash)
    elif sh.type == "rect":
        c.rect(min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0), sh.fillcolor or "none",
               stroke=color if width else None, stroke_width=width, opacity=sh.opacity)


def _draw_annotation(c: Canvas, an: Any, frames, mapper, area) -> None:
    x = _ref_pos(an.xref, an.x, frames, mapper, area, True)
    y = _ref_pos(an.yref, an.y, frames, mapper, area, False)
    if x is None or y is None or not an.text:
        return
    anchor = {"left": "start", "right": "end"}.get(an.xanchor or "center", "middle")
    dy = {"bottom": -6, "top": 14}.get(an.yanchor or "middle", 4)
    size = float(an.font.size) if an.font and an.font.size else 12
    color = an.font.color if an.font and an.font.color else INK
    limit = 80
    if (an.xref or "paper") == "paper" and anchor == "middle":
        # a subplot title: no wider than its subplot, so neighbours' titles never overlap
        widths = [box[2] for box in frames.values() if abs(box[0] + box[2] / 2 - x) < 2]
        if widths:
            limit = max(8, int(min(widths) / (0.6 * size)))
    text = plain(an.text)
    c.text(x, y + dy, short(text, limit), size=size, anchor=anchor, color=color,
           weight="600" if "<b>" in str(an.text) or size >= 13 else None, tip=text if len(text) > limit else None)


def _error_bounds(err: Any, base: list[Any]) -> list[tuple[float | None, float | None]] | None:
    """(low, high) per point of a plotly ``error_x``/``error_y`` of type ``data`` (arrays or constant), or None."""
    if err is None or err.visible is False or (err.array is None and err.value is None):
        return None
    if err.type not in (None, "data", "constant"):
        return None
    n = len(base)
    plus = _values(err.array) if err.array is not None else [err.value] * n
    minus = plus if err.symmetric is not False else (_values(err.arrayminus) if err.arrayminus is not None
                                                     else [err.valueminus or 0] * n)
    out: list[tuple[float | None, float | None]] = []
    for k, v in enumerate(base):
        p = plus[k] if k < len(plus) else None
        q = minus[k] if k < len(minus) else None
        if not (_finite(v) and _finite(p) and _finite(q)):
            out.append((None, None))
        else:
            out.append((float(v) - float(q), float(v) + float(p)))
    return out


def _legend_rows(items: list[tuple[str, str]], width: float, size: float = 11) -> list[list[tuple[str, str]]]:
    """Legend items broken into rows no wider than ``width`` (as :meth:`Canvas.legend` lays them)."""
    rows: list[list[tuple[str, str]]] = []
    x = width + 1
    for name, color in items:
        w = size + 14 + 0.6 * size * len(name)
        if x + w > width and (not rows or rows[-1]):
            rows.append([])
            x = 0.0
        rows[-1].append((name, color))
        x += w
    return rows
