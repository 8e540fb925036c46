"""A "Download report" button: one self-contained HTML file of the shown run(s) (:mod:`core.report`), built
only when the button is clicked (Streamlit calls the builder then, off the page's script run).

Usage on a page::

    report_button([run])                  # the page's run record(s) from ui_cache.choose_run / picked_run
    report_button([run_a, run_b])         # several runs of one kind: side by side on shared axes
"""

from __future__ import annotations

import functools
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from core.artifacts import Run, open_run, slug
from core.errors import UserError

if TYPE_CHECKING:
    from core.report import ReportConfig


def _open(run: Run | Mapping[str, Any] | str | Path) -> Run:
    """A run from a page's run record (``{"path", "key"}``), a :class:`Run` or a folder."""
    if isinstance(run, Run):
        return run
    # Opened afresh, not through ui_cache: this runs on Streamlit's download thread, outside the script run.
    return open_run(run["path"] if isinstance(run, Mapping) else run)


def _build(runs: Sequence[Run | Mapping[str, Any] | str | Path], config: ReportConfig | None) -> str:
    """The report; a run that cannot be read gives a one-line HTML page saying why (a download cannot show an
    error box)."""
    # imported here, on the download thread: the report builder (and torch with it) is not loaded for a page
    from core.report import ReportConfig, build_report

    try:
        return build_report([_open(r) for r in runs], config or ReportConfig())
    except UserError as e:
        return (f"<!DOCTYPE html><meta charset='utf-8'><title>No report</title>"
                f"<p>The report could not be made: {html.escape(str(e))}</p>")


def report_button(runs: Sequence[Run | Mapping[str, Any] | str | Path], *, key: str = "report",
                  config: ReportConfig | None = None, label: str = "Download report") -> None:
    """A button that downloads the HTML report of ``runs`` (run records of the page, :class:`Run` objects or
    folders), built when clicked, with the caps of ``config`` (default :class:`ReportConfig`)."""
    if not runs:
        return
    ids = [str(r.get("run_id") if isinstance(r, Mapping) else getattr(r, "run_id", Path(str(r)).name))
           for r in runs]
    name = slug("report-" + "-".join(ids), 100) + ".html"
    st.download_button(label, data=functools.partial(_build, list(runs), config), file_name=name,
                       mime="text/html", on_click="ignore", key=key,
                       help="One HTML file with every figure, table, clip and picture of the run, for a talk or an "
                            "email: it opens offline in any browser (built when clicked; a few seconds)")
