"""Light SVG drawing for the dashboard's first view: figures built on the server as one SVG string each.

Why not plotly here: in a new browser tab Streamlit loads its plotly.js chunk (4.7 MB) and compiles it
before the first chart draws, about 1.6 s on a 2-core machine, on every tab (benchmarks/results.md,
"Dashboard pages"); Vega-Lite costs about half that. An inline SVG costs nothing beyond its own nodes.
The pages show these figures first and offer the plotly versions (hover, zoom, toolbar export) behind an
"Interactive charts" switch. Pure: no streamlit.

Conventions: every string that reaches the SVG goes through :func:`esc` (runs are hostile); an element
with ``pick=`` gets a ``data-pick`` attribute that the page's SVG component turns into a click event; a
``tip=`` becomes the element's ``<title>`` (the browser's own tooltip).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from plotly.colors import sample_colorscale

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif"
INK = "#262730"
MUTED = "#6b6b76"
GRID = "#e6e6ea"


def esc(text: Any) -> str:
    """``text`` safe inside SVG text and attribute values (colours too: a figure's colours may come from
    a run's data one day)."""
    return html.escape(str(text), quote=True)


def num(v: float) -> str:
    """A coordinate, short."""
    return f"{v:.1f}".rstrip("0").rstrip(".") if math.isfinite(v) else "0"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of ten)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else [0.0]
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    def count(step: float) -> int:
        return math.floor(hi / step + 1e-9) - math.ceil(lo / step - 1e-9) + 1

    # the round step whose tick count is nearest n + 1 (ties: the larger step)
    step = min((m * mag for m in (1, 2, 2.5, 5, 10)), key=lambda st: (abs(count(st) - (n + 1)), -st))
    first = math.ceil(lo / step - 1e-9)
    ticks = [k * step for k in range(first, math.floor(hi / step + 1e-9) + 1)]
    return [0.0 if abs(t) < step * 1e-9 else t for t in ticks]


def tick_text(v: float, step: float, suffix: str = "") -> str:
    """A tick label with as many decimals as the step needs."""
    decimals = max(0, -math.floor(math.log10(step)) if step > 0 else 0)
    if step > 0 and abs(step * 10 ** decimals - round(step * 10 ** decimals)) > 1e-6:
        decimals += 1
    return f"{v:.{decimals}f}{suffix}"


def color_at(scale: str, t: float) -> str:
    """The colour of plotly's named colour scale ``scale`` at ``t`` in [0, 1] (plotly's Python colour
    tables; no JavaScript), as ``rgb(...)``."""
    t = 0.5 if not math.isfinite(t) else min(max(t, 0.0), 1.0)
    return sample_colorscale(scale, [t])[0]


def short(text: str, n: int = 18) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


class Canvas:
    """An SVG drawing ``width`` x ``height`` px (scales to its container's width, keeping its ratio)."""

    def __init__(self, width: float, height: float, label: str = "figure"):
        self.width, self.height, self.label = width, height, label
        self.parts: list[str] = []

    @staticmethod
    def _extra(tip: str | None, pick: str | None, body: str = "") -> tuple[str, str]:
        attrs = f' data-pick="{esc(pick)}"' if pick is not None else ""
        inner = (f"<title>{esc(tip)}</title>" if tip else "") + body
        return attrs, inner

    def rect(self, x: float, y: float, w: float, h: float, fill: str, *, stroke: str | None = None,
             stroke_width: float = 1, opacity: float | None = None, tip: str | None = None,
             pick: str | None = None, rx: float = 0) -> None:
        attrs, inner = self._extra(tip, pick)
        style = f' stroke="{esc(stroke)}" stroke-width="{num(stroke_width)}"' if stroke else ""
        style += f' opacity="{opacity:.2f}"' if opacity is not None else ""
        style += f' rx="{num(rx)}"' if rx else ""
        el = (f'<rect x="{num(x)}" y="{num(y)}" width="{num(max(w, 0))}" height="{num(max(h, 0))}" '
              f'fill="{esc(fill)}"{style}{attrs}')
        self.parts.append(f"{el}>{inner}</rect>" if inner else f"{el}/>")

    def circle(self, cx: float, cy: float, r: float, fill: str, *, stroke: str = "white", stroke_width: float = 0.6,
               tip: str | None = None, pick: str | None = None) -> None:
        attrs, inner = self._extra(tip, pick)
        el = (f'<circle cx="{num(cx)}" cy="{num(cy)}" r="{num(r)}" fill="{esc(fill)}" stroke="{esc(stroke)}" '
              f'stroke-width="{num(stroke_width)}"{attrs}')
        self.parts.append(f"{el}>{inner}</circle>" if inner else f"{el}/>")

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str = INK, width: float = 1,
             dash: str | None = None, opacity: float | None = None, tip: str | None = None) -> None:
        extra = f' stroke-dasharray="{esc(dash)}"' if dash else ""
        extra += f' stroke-opacity="{opacity:.2f}"' if opacity is not None else ""
        el = (f'<line x1="{num(x1)}" y1="{num(y1)}" x2="{num(x2)}" y2="{num(y2)}" stroke="{esc(stroke)}" '
              f'stroke-width="{num(width)}"{extra}')
        self.parts.append(f"{el}><title>{esc(tip)}</title></line>" if tip else f"{el}/>")

    def text(self, x: float, y: float, text: str, *, size: float = 12, anchor: str = "start", color: str = INK,
             weight: str | None = None, rotate: float | None = None, baseline: str = "auto",
             tip: str | None = None, passive: bool = False) -> None:
        """``passive``: clicks go through to what is under the text (a label on a clickable mark)."""
        extra = f' font-weight="{weight}"' if weight else ""
        extra += ' pointer-events="none"' if passive else ""
        extra += f' transform="rotate({num(rotate)} {num(x)} {num(y)})"' if rotate else ""
        extra += f' dominant-baseline="{baseline}"' if baseline != "auto" else ""
        body = esc(text) + (f"<title>{esc(tip)}</title>" if tip else "")
        self.parts.append(f'<text x="{num(x)}" y="{num(y)}" font-size="{num(size)}" text-anchor="{anchor}" '
                          f'fill="{esc(color)}"{extra}>{body}</text>')

    def image(self, x: float, y: float, w: float, h: float, href: str, opacity: float = 1.0) -> None:
        """An embedded picture; ``href`` must be a ``data:image/...`` URI (never a path or URL)."""
        if not href.startswith("data:image/"):
            return
        op = f' opacity="{opacity:.2f}"' if opacity < 1 else ""
        self.parts.append(f'<image x="{num(x)}" y="{num(y)}" width="{num(w)}" height="{num(h)}" '
                          f'preserveAspectRatio="xMidYMid meet" href="{esc(href)}"{op}/>')

    def raw(self, svg: str) -> None:
        """Markup built by this module's own code (never text from a run)."""
        self.parts.append(svg)

    def legend(self, x: float, y: float, items: Sequence[tuple[str, str]], size: float = 12) -> float:
        """Colour swatches with names in one row from (x, y); returns the row's right end."""
        for name, color in items:
            self.rect(x, y - size + 2, size, size, color, rx=2)
            self.text(x + size + 5, y, name, size=size)
            x += size + 14 + 0.6 * size * len(name)
        return x

    def svg(self) -> str:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {num(self.width)} {num(self.height)}" '
                f'width="100%" style="max-width:{num(self.width)}px;height:auto;font-family:{FONT}" '
                f'role="img" aria-label="{esc(self.label)}">' + "".join(self.parts) + "</svg>")


class Frame:
    """A plotting area of a :class:`Canvas`: data ranges mapped to the box (x0, y0, w, h) in px."""

    def __init__(self, canvas: Canvas, box: tuple[float, float, float, float], xlim: tuple[float, float],
                 ylim: tuple[float, float]):
        self.c, (self.x0, self.y0, self.w, self.h) = canvas, box
        self.xlim, self.ylim = xlim, ylim

    def px(self, x: float) -> float:
        lo, hi = self.xlim
        return self.x0 + (x - lo) / ((hi - lo) or 1) * self.w

    def py(self, y: float) -> float:
        lo, hi = self.ylim
        return self.y0 + self.h - (y - lo) / ((hi - lo) or 1) * self.h

    def yaxis(self, ticks: Sequence[float], title: str = "", fmt: Callable[[float], str] | None = None,
              grid: bool = True, labels: bool = True) -> None:
        step = (ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
        for t in ticks:
            y = self.py(t)
            if grid:
                self.c.line(self.x0, y, self.x0 + self.w, y, GRID)
            if labels:
                self.c.text(self.x0 - 6, y + 4, fmt(t) if fmt else tick_text(t, step), size=11, anchor="end",
                            color=MUTED)
        if title:
            x, y = self.x0 - 46, self.y0 + self.h / 2
            self.c.text(x, y, title, size=12, anchor="middle", rotate=-90, color=INK)

    def xaxis(self, ticks: Sequence[float], title: str = "", fmt: Callable[[float], str] | None = None,
              grid: bool = False) -> None:
        step = (ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
        base = self.y0 + self.h
        self.c.line(self.x0, base, self.x0 + self.w, base, "#8a8a93")
        for t in ticks:
            x = self.px(t)
            if grid:
                self.c.line(x, self.y0, x, base, GRID)
            self.c.line(x, base, x, base + 4, "#8a8a93")
            self.c.text(x, base + 16, fmt(t) if fmt else tick_text(t, step), size=11, anchor="middle", color=MUTED)
        if title:
            self.c.text(self.x0 + self.w / 2, base + 34, title, size=12, anchor="middle")

    def vline(self, x: float, color: str = "#444", dash: str = "5 4", tip: str | None = None) -> None:
        self.c.line(self.px(x), self.y0, self.px(x), self.y0 + self.h, color, 1.2, dash=dash, tip=tip)

    def hline(self, y: float, color: str = "#444", dash: str = "5 4") -> None:
        self.c.line(self.x0, self.py(y), self.x0 + self.w, self.py(y), color, 1.2, dash=dash)


def colorbar(c: Canvas, x: float, y: float, h: float, scale: str, lo: float, hi: float, title: str = "",
             steps: int = 24) -> None:
    """A vertical colour bar for ``scale`` from ``lo`` (bottom) to ``hi`` (top), 12 px wide."""
    for k in range(steps):
        c.rect(x, y + h * k / steps, 12, h / steps + 0.5, color_at(scale, 1 - (k + 0.5) / steps))
    c.rect(x, y, 12, h, "none", stroke="#bbb")
    ticks = nice_ticks(lo, hi, 4) if hi > lo else [lo]
    step = (ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    for t in ticks:
        ty = y + h - (t - lo) / ((hi - lo) or 1) * h
        c.text(x + 16, ty + 4, tick_text(t, step), size=10, color=MUTED)
    if title:
        c.text(x, y - 8, title, size=11, color=MUTED)


def bar_hist(values_counts: Sequence[tuple[str, np.ndarray, np.ndarray, str]], lam: float | None = None,
             xlim: tuple[float, float] | None = None, x_title: str = "", width: int = 460, panel_h: int = 170,
             label: str = "histograms") -> str:
    """Stacked panels of histograms sharing the x axis: each (title, counts (B,), edges (B+1,), colour);
    each bar's tooltip gives its bin and count; ``lam`` draws a dashed line in every panel."""
    top, gap, left = 26, 44, 58
    height = top + len(values_counts) * (panel_h + gap) + 10
    c = Canvas(width, height, label)
    lo = min((float(e[0]) for _, _, e, _ in values_counts if len(e)), default=-1.0)
    hi = max((float(e[-1]) for _, _, e, _ in values_counts if len(e)), default=1.0)
    xlim = xlim or (lo, hi)
    for k, (title, counts, edges, color) in enumerate(values_counts):
        y0 = top + k * (panel_h + gap)
        ymax = max(float(np.max(counts)) if len(counts) else 1.0, 1.0)
        f = Frame(c, (left, y0, width - left - 14, panel_h), xlim, (0.0, ymax * 1.08))
        f.yaxis(nice_ticks(0, ymax * 1.05, 4), "units")
        for n, a, b in zip(counts, edges[:-1], edges[1:], strict=True):
            if n > 0:
                x0, x1 = f.px(a), f.px(b)
                c.rect(x0 + 0.4, f.py(n), max(x1 - x0 - 0.8, 0.8), f.py(0) - f.py(n), color,
                       tip=f"{a:.2f} to {b:.2f}: {int(n)} units")
        if lam is not None:
            f.vline(lam, tip=f"λ = {lam:g}")
        f.xaxis(nice_ticks(*xlim, max(3, int((width - left) // 90))), x_title if k == len(values_counts) - 1 else "")
        c.text(left, y0 - 8, title, size=13, weight="600")
    return c.svg()
