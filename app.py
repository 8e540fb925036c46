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

from core import ui_cache  # noqa: E402

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


def sidebar() -> None:
    """Root display and input, and the global run picker (``st.session_state["run_path"]``)."""
    st.session_state.setdefault("root_input", initial_root())
    with st.sidebar:
        st.text_input("Artifact root", key="root_input",
                      help="Folder holding runs as <root>/<kind>/<run_id>/")
        root = str(Path(st.session_state["root_input"].strip() or initial_root()).expanduser().resolve())
        st.session_state[ui_cache.ROOT_KEY] = root
        if not Path(root).is_dir():
            st.caption(f"`{root}` — no such folder")
        elif root != st.session_state["root_input"].strip():
            st.caption(f"`{root}`")

        runs = [r for r in ui_cache.load_runs(root) if r["ok"]]
        if not runs:
            st.session_state.pop(ui_cache.RUN_KEY, None)
            st.caption("No complete runs here.")
            return
        labels = {r["path"]: ui_cache.run_label(r) for r in runs}
        if st.session_state.get(ui_cache.RUN_KEY) not in labels:
            st.session_state[ui_cache.RUN_KEY] = runs[0]["path"]
        st.selectbox("Run", list(labels), key=ui_cache.RUN_KEY, format_func=labels.__getitem__)


st.set_page_config(page_title="Concept Lens", layout="wide")
page = st.navigation(PAGES)
ui_cache.frame_ran()
sidebar()
page.run()
