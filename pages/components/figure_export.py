"""Figures for papers: a small "Export" popover beside a figure: SVG, PDF or PNG at a chosen DPI, in the
colour-blind-safe print style of :mod:`core.export`. The file is rendered only when its download button is
clicked (Streamlit calls the builder then, off the page's script run), and the popover's widgets only exist
while it is open (opening it reruns the page), so a page with many figures stays fast to open.

Usage on a page, after ``st.plotly_chart(fig, ...)``::

    export_buttons(fig, f"{run_id}-unit-categories")              # a figure already built
    export_buttons(lambda: vv.graph_figure(graph, thumbs), name)  # or a builder, called on click only
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import plotly.graph_objects as go
import streamlit as st

from core import export
from core.artifacts import slug
from core.viz import md_text

FORMAT_NAMES = {"svg": "SVG (vector)", "pdf": "PDF (vector)", "png": "PNG (raster, chosen DPI)"}


def _render(fig_or_builder: go.Figure | Callable[[], go.Figure], fmt: str, dpi: int, palette: bool) -> bytes:
    """The exported file (called by Streamlit when the download button is clicked)."""
    fig = fig_or_builder() if callable(fig_or_builder) else fig_or_builder
    return export.export_figure(fig, fmt, dpi=dpi, palette=palette)


def export_buttons(fig_or_builder: go.Figure | Callable[[], go.Figure], name: str, *, key: str | None = None,
                   label: str = "Export figure") -> None:
    """A popover with the format (SVG, PDF, PNG), the DPI of a PNG, the palette, and a download button that
    renders the figure (``fig_or_builder``, or what it returns when called) only when clicked. ``name``: the
    file's name without suffix (made safe)."""
    key = key or f"export-{slug(name, 80)}"
    pop = st.popover(label, key=f"{key}-pop", on_change="rerun")
    if not pop.open:  # drawn when opened: a closed popover adds one button, not four widgets, to the page
        return
    with pop:
        if export.find_chromium() is None:
            st.caption("Static export needs Chromium on this machine (`apt-get install chromium`, or set "
                       "`CONCEPT_LENS_CHROMIUM`). The camera button in the figure's toolbar still saves a PNG.")
            return
        fmt = st.segmented_control("Format", list(FORMAT_NAMES), default="svg", key=f"{key}-fmt",
                                   format_func=FORMAT_NAMES.__getitem__) or "svg"
        dpi = int(st.number_input("DPI (PNG)", 72, 1200, 300, step=50, key=f"{key}-dpi", disabled=fmt != "png",
                                  help="Pixels per inch at the figure's size on the page (96 px = 1 inch)"))
        palette = st.toggle("Colour-blind-safe colours (Okabe-Ito)", value=True, key=f"{key}-palette")
        st.download_button(f"Download {md_text(fmt.upper())}", data=functools.partial(_render, fig_or_builder, fmt,
                                                                                     dpi, palette),
                           file_name=f"{slug(name, 100)}.{fmt}", mime=export.MIME[fmt], on_click="ignore",
                           key=f"{key}-dl", help="Rendered when clicked (a few seconds: Chromium draws it)")
