"""A run's degenerate-result warnings (``rec["warnings"]``), each shown beside the figure it affects."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import streamlit as st

from core.viz_vcc import md_code, md_text


def warnings_at(warnings: Sequence[Mapping[str, Any]], place: str, places: Mapping[str, Iterable[str]],
                layer_place: str | None = None) -> list[Mapping[str, Any]]:
    """The warnings shown at ``place``: those whose ``figure`` is one of ``places[place]``; a warning naming
    only a layer goes to ``layer_place``; any other (run-level, or a figure this page does not draw)
    goes to ``"top"``."""
    known = {f: p for p, figs in places.items() for f in figs}
    out = []
    for w in warnings:
        if not isinstance(w, Mapping):
            continue
        fig = w.get("figure")
        where = known.get(str(fig)) if fig is not None else (layer_place if w.get("layer") else None)
        if (where or "top") == place:
            out.append(w)
    return out


def warning_text(w: Mapping[str, Any]) -> str:
    """One warning as markdown, every part from the run escaped: ``**layer**: message (setting: `--x`)``."""
    layer = f"**{md_text(w['layer'])}**: " if w.get("layer") else ""
    setting = f" (setting: {md_code(w['setting'])})" if w.get("setting") else ""
    return f"{layer}{md_text(w.get('message') or w.get('code') or 'warning')}{setting}"


def show(warnings: Sequence[Mapping[str, Any]], place: str, places: Mapping[str, Iterable[str]],
         layer_place: str | None = None) -> None:
    """An ``st.warning`` per warning of ``place`` (see :func:`warnings_at`)."""
    for w in warnings_at(warnings, place, places, layer_place):
        st.warning(warning_text(w), icon="⚠️")
