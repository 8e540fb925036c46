"""Tabs that run only the open tab's content (Streamlit's stateful tabs): hidden figures cost nothing."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import streamlit as st


def lazy_tabs(parts: Mapping[str, Callable[[], None]], key: str, default: str | None = None) -> str:
    """One tab per ``label -> draw`` of ``parts``; only the open tab's ``draw()`` runs (switching tabs reruns
    the page, or the enclosing fragment). Labels are markdown: escape text from a run. Returns the open label."""
    labels = list(parts)
    if st.session_state.get(key) not in labels:
        st.session_state.pop(key, None)
    tabs = st.tabs(labels, key=key, on_change="rerun", default=default if default in labels else None)
    shown = labels[0]
    for label, tab in zip(labels, tabs, strict=True):
        if tab.open is False:
            continue
        shown = label
        with tab:
            parts[label]()
        if tab.open is None:  # no state (should not happen with on_change="rerun"): draw the first only
            break
    return shown
