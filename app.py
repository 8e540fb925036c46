"""Concept Lens dashboard: page frame, artifact root, global run picker and page routing.

    streamlit run app.py -- --root DIR      (or CONCEPT_LENS_ARTIFACTS=DIR; default assets/demo)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import streamlit as st

APP_DIR = Path(__file__).resolve().parent
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))

from core import ui_cache, viz  # noqa: E402
from pages.components import svg_chart  # noqa: E402
from pages.components.report_button import report_button  # noqa: E402

ENV_ROOT = "CONCEPT_LENS_ARTIFACTS"
DEFAULT_ROOT = APP_DIR / "assets" / "demo"

PAGES = [
    st.Page("pages/home.py", title="Runs", icon=":material/folder_open:", default=True),
    st.Page("pages/predictions.py", title="Predictions", icon=":material/image:"),
    st.Page("pages/static_dynamic.py", title="Static / dynamic", icon=":material/stacked_bar_chart:"),
    st.Page("pages/vtcd.py", title="Concept tubelets", icon=":material/view_in_ar:"),
    st.Page("pages/vcc.py", title="Concept connectome", icon=":material/hub:"),
    st.Page("pages/vcc_debug.py", title="Failure debugger", icon=":material/bug_report:"),
]


def cli_root(argv: list[str]) -> str | None:
    """The ``--root DIR`` given after ``--`` on the ``streamlit run`` command line, if any."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--root")
    try:
        args, _ = parser.parse_known_args(argv)
    except SystemExit:
        return None
    return args.root


def initial_root() -> str:
    """Artifact root from ``--root``, else ``$CONCEPT_LENS_ARTIFACTS``, else ``assets/demo`` by app.py."""
    root = cli_root(sys.argv[1:]) or os.environ.get(ENV_ROOT) or str(DEFAULT_ROOT)
    return str(Path(root).expanduser().resolve())


# Run kinds each page shows, most wanted first: the sidebar lists only these (every kind on Runs).
PAGE_KINDS: dict[str, tuple[str, ...]] = {
    "predictions": ("predictions",),
    "static_dynamic": ("static-dynamic",),
    "vtcd": ("vtcd", "rosetta"),
    "vcc": ("vcc",),
    "vcc_debug": ("vcc-debug",),
}


def sidebar(kinds: tuple[str, ...] | None) -> None:
    """Root display and input, and the run picker (``st.session_state["run_path"]``) over the runs of
    ``kinds`` (None: every kind). Root and run are read from the URL at a session's start and kept in it."""
    st.session_state.setdefault("root_input", initial_root())
    ui_cache.read_url_once("root_input")
    with st.sidebar:
        root = root_picker()
        st.session_state[ui_cache.ROOT_KEY] = root
        ui_cache.set_url_param(ui_cache.URL_ROOT, None if root == initial_root() else root)
        if not Path(root).is_dir():
            st.caption(f"{viz.md_code(root)} — no such folder")
        elif root != st.session_state["root_input"].strip():
            st.caption(viz.md_code(root))

        runs = [r for r in ui_cache.load_runs(root) if r["ok"] and (kinds is None or r["kind"] in kinds)]
        if not runs:
            ui_cache.run_shown(None, kinds)
            st.caption("No complete runs here." if kinds is None else
                       f"No complete {' or '.join(kinds)} runs here.")
            return
        labels = {r["path"]: ui_cache.run_label(r) for r in runs}
        ui_cache.pick_run(runs, kinds)
        path = st.selectbox("Run", list(labels), key=ui_cache.RUN_KEY, format_func=labels.__getitem__)
        shown = next(r for r in runs if r["path"] == path)
        ui_cache.run_shown(shown, kinds)
        # one HTML file of the run (figures, clips, tables) for a talk or an email; built when clicked
        others = [r for r in runs if r["kind"] == shown["kind"] and r["path"] != path]
        compare = compare_picker(others, labels, shown["kind"]) if others and kinds else []
        st.session_state[ui_cache.COMPARE_KEY] = [r for r in others if r["path"] in compare]
        report_button([shown, *st.session_state[ui_cache.COMPARE_KEY]], key=f"report-{shown['kind']}",
                      label="Download report" + (f" ({1 + len(compare)} runs)" if compare else ""))


def root_picker() -> str:
    """The artifact root (resolved), shown as a popover button that holds its text box (the box exists only
    while the popover is open; what was typed is kept in ``st.session_state["root_input"]``)."""
    text = str(st.session_state.get("root_input") or "")
    st.session_state["root_input"] = text  # kept while the popover is closed
    root = str(Path(text.strip() or initial_root()).expanduser().resolve())
    shown = "/".join(Path(root).parts[-2:])
    # the label names the root: a new root makes a new popover, so the old one closes once a root is entered
    pop = st.popover(f"Artifact root: {viz.md_text(shown)}", key="root_pop", on_change="rerun", width="stretch",
                     icon=":material/folder_open:", help=f"{viz.md_code(root)}: the folder holding runs as "
                     "`<root>/<kind>/<run_id>/`. Click to change it.")
    if pop.open:
        with pop:
            st.text_input("Artifact root", key="root_input", help="Folder holding runs as <root>/<kind>/<run_id>/; "
                          "press Enter to open it")
    return root


def compare_picker(others: list[dict], labels: dict[str, str], kind: str) -> list[str]:
    """Paths of the runs (of ``others``) to lay beside the shown one, picked in a popover whose select box
    exists only while it is open (a closed popover is one cheap button for the browser); kept while closed."""
    key = f"compare-{kind}"
    paths = [r["path"] for r in others]
    kept = [p for p in st.session_state.get(key) or [] if p in paths]
    st.session_state[key] = kept
    pop = st.popover("Compare with other runs", key=f"{key}-pop", on_change="rerun", icon=":material/compare:",
                     help="Other runs of this kind, laid beside this one on shared axes: on the page (Static / "
                     "dynamic overview, VTCD grid) and in the report")
    if pop.open:
        with pop:
            st.multiselect("Compare with", paths, key=key, format_func=labels.__getitem__)
    chosen = st.session_state[key]
    if chosen and not pop.open:
        st.caption(f"Compared with {len(chosen)} other run{'s' if len(chosen) > 1 else ''}.")
    return chosen


# An explicit favicon: without one the browser tab takes the page's ":material/..." icon, which the
# frontend fetches from a public font host (the icons in the navigation itself use the bundled font).
st.set_page_config(page_title="Concept Lens", page_icon="🔎", layout="wide")
page = st.navigation(PAGES)
ui_cache.frame_ran()
ui_cache.page_switched(page.url_path)
sidebar(PAGE_KINDS.get(page.url_path))
svg_chart.interactive()  # the chart mode (light SVG or interactive plotly), also when there is no run to pick
page.run()
