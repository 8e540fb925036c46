"""Figures for papers: a plotly figure as SVG, PDF (vector) or PNG at a chosen DPI, offline.

Uses plotly's own static export, kaleido 1.x, which drives a Chromium through ``choreographer``. It is
pointed at the system's Chromium (``$CONCEPT_LENS_CHROMIUM``, else ``/usr/bin/chromium`` or ``chromium`` on
the PATH): kaleido never downloads a browser here, MathJax (fetched from a CDN by default) is off, and
plotly.js is the copy inside the installed plotly package, so an export makes no network request.

:func:`paper_figure` restyles a copy of a figure for print: the Okabe-Ito colour-blind-safe palette in place
of its saturated colours (greys, black and white are kept, so are alphas), white backgrounds, and a font
stack ending in the generic ``sans-serif`` that every SVG viewer and PDF converter can substitute.
"""

from __future__ import annotations

import asyncio
import colorsys
import copy
import io
import os
import re
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from core.errors import UserError

FORMATS = ("svg", "pdf", "png")
MIME = {"svg": "image/svg+xml", "pdf": "application/pdf", "png": "image/png"}
CSS_DPI = 96
"""A figure's pixel size is in CSS pixels (96 per inch): a PNG at ``dpi`` is ``dpi / 96`` times larger."""
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442")
"""Okabe & Ito (2008), black left out (kept for text): blue, orange, bluish green, vermillion, reddish purple,
sky blue, yellow."""
FONT = "Arial, 'Liberation Sans', 'DejaVu Sans', Helvetica, sans-serif"
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/lib/chromium/chromium")
DEFAULT_WIDTH = 900
DEFAULT_HEIGHT = 500


class ExportError(UserError):
    """A figure that cannot be exported (no browser, an unknown format, a DPI out of range)."""


def find_chromium() -> str | None:
    """The system Chromium kaleido drives: ``$CONCEPT_LENS_CHROMIUM``, Debian's, or ``chromium`` on the PATH."""
    env = os.environ.get("CONCEPT_LENS_CHROMIUM")
    for p in ([env] if env else []) + list(CHROMIUM) + [shutil.which("chromium") or ""]:
        if p and Path(p).is_file() and os.access(p, os.X_OK):
            return p
    return None


# ----------------------------------------------------------------------------------------------
# Print style

_RGB = re.compile(r"rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*(?:,\s*([\d.]+)\s*)?\)")


def _parse(color: Any) -> tuple[tuple[int, int, int], float | None] | None:
    """``#rrggbb`` / ``#rgb`` / ``rgb()`` / ``rgba()`` as ((r, g, b), alpha or None); None for anything else."""
    if not isinstance(color, str):
        return None
    c = color.strip()
    if re.fullmatch(r"#[0-9a-fA-F]{6}", c):
        return (int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)), None
    if re.fullmatch(r"#[0-9a-fA-F]{3}", c):
        return (int(c[1] * 2, 16), int(c[2] * 2, 16), int(c[3] * 2, 16)), None
    m = _RGB.fullmatch(c)
    if m:
        return (int(float(m[1])), int(float(m[2])), int(float(m[3]))), None if m[4] is None else float(m[4])
    return None


def _saturated(rgb: tuple[int, int, int]) -> bool:
    _, lightness, sat = colorsys.rgb_to_hls(*(v / 255 for v in rgb))
    return sat > 0.25 and 0.12 < lightness < 0.93


class _Palette:
    """Maps each saturated colour, in order of first use, to the next Okabe-Ito colour."""

    def __init__(self) -> None:
        self.map: dict[tuple[int, int, int], str] = {}

    def __call__(self, color: Any) -> Any:
        parsed = _parse(color)
        if parsed is None or not _saturated(parsed[0]):
            return color
        rgb, alpha = parsed
        if rgb not in self.map:
            self.map[rgb] = OKABE_ITO[len(self.map) % len(OKABE_ITO)]
        new = self.map[rgb]
        if alpha is None:
            return new
        r, g, b = (int(new[i:i + 2], 16) for i in (1, 3, 5))
        return f"rgba({r},{g},{b},{alpha:g})"


def _recolor(obj: Any, pal: _Palette) -> None:
    """Recolour every ``color``-like property of a plotly object (and its children) in place."""
    for key in ("color", "fillcolor", "bgcolor", "bordercolor"):
        try:
            value = obj[key]
        except (KeyError, ValueError, TypeError, AttributeError):
            continue
        if isinstance(value, str):
            obj[key] = pal(value)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            obj[key] = [pal(v) for v in value]
    for key in ("marker", "line", "error_x", "error_y"):
        try:
            child = obj[key]
        except (KeyError, ValueError, TypeError, AttributeError):
            continue
        if child is not None and hasattr(child, "to_plotly_json"):
            _recolor(child, pal)


def paper_figure(fig: go.Figure, palette: bool = True) -> go.Figure:
    """A copy of ``fig`` styled for print: Okabe-Ito colours (``palette``), :data:`FONT`, white background."""
    out = go.Figure(copy.deepcopy(fig.to_dict()))
    if palette:
        pal = _Palette()
        for tr in out.data:
            _recolor(tr, pal)
        for shape in out.layout.shapes or ():
            _recolor(shape, pal)
        out.update_layout(colorway=list(OKABE_ITO))
    out.update_layout(font={"family": FONT}, paper_bgcolor="white", template="simple_white"
                      if fig.layout.template is None else None)
    # Dashboard figures keep tight margins; on paper the tick labels and axis titles must fit.
    out.update_xaxes(automargin=True)
    out.update_yaxes(automargin=True)
    if fig.layout.plot_bgcolor is None:
        out.update_layout(plot_bgcolor="white")
        out.update_xaxes(showline=True, linecolor="#444", gridcolor="#e5e5e5")
        out.update_yaxes(showline=True, linecolor="#444", gridcolor="#e5e5e5")
    return out


# ----------------------------------------------------------------------------------------------
# Export


def _check(fmt: str, dpi: int) -> str:
    fmt = str(fmt).lower()
    if fmt not in FORMATS:
        raise ExportError(f"figure format {fmt[:20]!r} is not one of {', '.join(FORMATS)}")
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not 36 <= dpi <= 1200:
        raise ExportError(f"dpi must be a whole number from 36 to 1200, not {dpi!r}")
    return fmt


def _size(fig: go.Figure, width: int | None, height: int | None) -> tuple[int, int]:
    return int(width or fig.layout.width or DEFAULT_WIDTH), int(height or fig.layout.height or DEFAULT_HEIGHT)


def _with_dpi(png: bytes, dpi: int) -> bytes:
    """The PNG with its physical resolution (pHYs) set, so it prints at the figure's size."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        buf = io.BytesIO()
        im.save(buf, format="PNG", dpi=(dpi, dpi), optimize=True)
    return buf.getvalue()


def export_figures(figs: Sequence[go.Figure], fmt: str, *, dpi: int = 300, width: int | None = None,
                   height: int | None = None, palette: bool = True) -> list[bytes]:
    """Each figure as ``fmt`` bytes (``svg``, ``pdf``, or ``png`` at ``dpi``: ``width`` x ``height`` CSS
    pixels (default: the figure's, else 900 x 500) times ``dpi / 96``), through one browser session."""
    fmt = _check(fmt, dpi)
    browser = find_chromium()
    if browser is None:
        raise ExportError("exporting a figure needs Chromium (apt-get install chromium, or set "
                          "CONCEPT_LENS_CHROMIUM to a Chromium or Chrome executable)")
    try:
        import kaleido
    except ImportError:
        raise ExportError("exporting a figure needs the kaleido package (pip install -r requirements.txt)") from None
    jobs = []
    for fig in figs:
        styled = paper_figure(fig, palette)
        w, h = _size(fig, width, height)
        jobs.append((styled, {"format": fmt, "width": w, "height": h, "scale": dpi / CSS_DPI if fmt == "png" else 1}))

    async def render() -> list[bytes]:
        async with kaleido.Kaleido(path=browser, mathjax=False, n=1) as k:
            return [await k.calc_fig(f, opts=o) for f, o in jobs]

    result: dict[str, Any] = {}

    def worker() -> None:  # a thread of its own: the caller may already run an event loop (Streamlit, Jupyter)
        try:
            result["out"] = asyncio.run(render())
        except BaseException as e:  # re-raised in the caller
            result["error"] = e

    t = threading.Thread(target=worker, daemon=True)
    t.start()
    t.join()
    if "error" in result:
        e = result["error"]
        raise ExportError(f"the figure could not be exported as {fmt} ({type(e).__name__}: {str(e)[:300]})") from e
    out = result["out"]
    return [_with_dpi(b, dpi) for b in out] if fmt == "png" else list(out)


def export_figure(fig: go.Figure, fmt: str, *, dpi: int = 300, width: int | None = None, height: int | None = None,
                  palette: bool = True) -> bytes:
    """``fig`` as ``fmt`` bytes: see :func:`export_figures`."""
    return export_figures([fig], fmt, dpi=dpi, width=width, height=height, palette=palette)[0]
