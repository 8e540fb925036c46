"""Helpers shared by the page tests (AppTest)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def texts(at: AppTest) -> str:
    """All the visible text of a rendered page: title, markdown, captions, alerts and subheaders."""
    parts = [e.value for kind in ("title", "markdown", "caption", "info", "warning", "error", "subheader")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def compare_with(at: AppTest, kind: str):
    """The sidebar's "Compare with" select box for runs of ``kind``, its popover opened (the box exists only
    while it is open; AppTest then closes it on the next run, and the choice must stay)."""
    at.session_state[f"compare-{kind}-pop"] = True
    at.run()
    return next(m for m in at.sidebar.multiselect if m.label == "Compare with")
