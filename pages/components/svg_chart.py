"""Inline SVG figures (built by :mod:`core.svg_figures`) and other escaped markup (galleries) in the page,
clickable where the markup marks elements with ``data-pick``; and the sidebar switch to plotly's interactive
versions.

One ``st.components.v2`` component (inline JS, no build step, no network): it puts the SVG into the page
and reports a click on a ``data-pick`` element as the ``pick`` event. A new tab pays no chart library
(plotly.js costs about 1.6 s per tab on a 2-core machine: benchmarks/results.md).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Hashable
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from core import svg_plotly, ui_cache
from pages.components.figure_export import export_buttons

_JS = """
export default function(component) {
    const { data, parentElement, setTriggerValue } = component;
    const box = parentElement.querySelector('.cl-svg');
    if (box._svg !== data) {  // only redraw when the figure changed
        box.innerHTML = data;
        box._svg = data;
    }
    box.querySelectorAll('[data-pick]').forEach((el) => {
        el.onclick = () => setTriggerValue('pick', el.getAttribute('data-pick'));
    });
    // a gallery's tile without a pick: a click enlarges it over the page, a second click or Escape closes it
    box.querySelectorAll('[data-zoom]').forEach((el) => {
        el.onclick = () => el.classList.toggle('cl-zoomed');
    });
    if (!window.__clZoomKeys) {
        window.__clZoomKeys = true;
        document.addEventListener('keydown', (e) => {
            if (e.key !== 'Escape') return;
            document.querySelectorAll('.cl-zoomed').forEach((z) => z.classList.remove('cl-zoomed'));
        });
    }
}
"""
_CSS = """
.cl-svg svg { display: block; }
.cl-svg [data-pick] { cursor: pointer; }
.cl-svg [data-pick]:hover { filter: brightness(0.88); stroke-opacity: 1; }
"""
# Not style-isolated: the SVG sits in the page's own DOM (searchable, printable, reachable by tests); its CSS
# names only the component's own class.
_COMPONENT = st.components.v2.component("concept_lens.svg_chart", html="<div class='cl-svg'></div>", css=_CSS,
                                        js=_JS, isolate_styles=False)

MODES = ["light", "interactive"]
MODE_KEY = "charts_mode"
ENV = "CONCEPT_LENS_CHARTS"
"""Environment variable: the chart mode a page opens in when its URL names none (default light)."""


def interactive() -> bool:
    """The sidebar choice "Charts: light | interactive" (interactive: plotly, with hover, zoom and a toolbar
    to save a figure, slower to open in a new tab), kept in the URL as ``?charts=``."""
    default = os.environ.get(ENV, MODES[0])
    ui_cache.url_state(ui_cache.URL_CHARTS, MODES, default if default in MODES else MODES[0], key=MODE_KEY)
    mode = st.sidebar.segmented_control(
        "Charts", MODES, key=MODE_KEY, help="light: SVG figures that open at once, with tooltips; click them as "
        "usual. interactive: plotly figures with hover values, zoom, pan and a toolbar to save them (about 1.5 s "
        "more to open a page in a new tab).")
    return mode == "interactive"


def light() -> bool:
    """Whether the page draws light figures (the choice :func:`interactive` made in this run)."""
    return st.session_state.get(MODE_KEY) != "interactive"


def svg_chart(svg: str, *, key: str, on_pick: Callable[[str], None] | None = None) -> None:
    """Draw ``svg`` (markup from :mod:`core.svg_figures`, whose strings are escaped); a click on one of its
    ``data-pick`` elements calls ``on_pick(value)`` before the rerun."""

    def picked() -> None:
        state = st.session_state.get(key)
        value = getattr(state, "pick", None) if state is not None else None
        if value is None and isinstance(state, dict):
            value = state.get("pick")
        if value is not None and on_pick is not None:
            on_pick(str(value))

    _COMPONENT(data=svg, key=key, on_pick_change=picked)


@st.cache_data(max_entries=128, show_spinner=False)
def _converted(spec: str, width: int, _fig: go.Figure) -> str:
    return svg_plotly.to_svg(_fig, width=width)


@st.cache_data(max_entries=128, show_spinner=False)
def _built_and_converted(spec: str, width: int, _build: Callable[[], go.Figure]) -> str:
    return svg_plotly.to_svg(_build(), width=width)


def chart(fig: go.Figure | Callable[[], go.Figure], *, key: str, config: dict[str, Any] | None = None,
          width: int = svg_plotly.WIDTH, spec: Hashable | None = None, **plotly: Any) -> None:
    """A figure without clicks: in light mode the plotly figure drawn as SVG on the server
    (:func:`core.svg_plotly.to_svg`), else ``st.plotly_chart``. ``fig``: the figure, or a function that builds
    it; ``spec``: a hashable naming everything the figure shows (e.g. the run's path and key and the choices
    drawn): the light SVG is then cached under it and the figure built only when it is not (without ``spec``
    it is cached by the figure's content, which costs a JSON dump each run). ``width``: the SVG's width in px
    (about its column's, so that its text is drawn at its size)."""
    build = fig if callable(fig) else (lambda: fig)
    if light():
        if spec is not None:
            svg = _built_and_converted(repr(spec), width, build)
        else:
            built = build()
            svg = _converted(hashlib.sha256(built.to_json().encode()).hexdigest(), width, built)
        svg_chart(svg, key=f"{key}-svg")
    else:
        st.plotly_chart(build(), key=key, config=config, **plotly)
    name = ((config or {}).get("toImageButtonOptions") or {}).get("filename") or key
    export_buttons(fig, name, key=f"{key}-export")
