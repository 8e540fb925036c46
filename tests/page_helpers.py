"""Helpers shared by the page tests (AppTest)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def texts(at: AppTest) -> str:
    """All the visible text of a rendered page: title, markdown, captions, alerts and subheaders."""
    parts = [e.value for kind in ("title", "markdown", "caption", "info", "warning", "error", "subheader")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)
