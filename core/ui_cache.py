"""Cached run loading for the dashboard: the one module in ``core`` that imports Streamlit.

Listings are cached for a few seconds; run contents are cached under the run's ``key`` (a hash of
its manifest), so a replaced run gets fresh entries.
"""

from __future__ import annotations

import json
import runpy
from typing import Any

import numpy as np
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.artifacts import Run, RunEntry, list_runs, open_run

RUNS_TTL_S = 5
ROOT_KEY = "artifact_root"
RUN_KEY = "run_path"
_FRAME_KEY = "_frame_ran"


def frame_ran() -> None:
    """Called by app.py on every run, before it runs the page."""
    st.session_state[_FRAME_KEY] = True


def require_frame() -> None:
    """First call of every page: makes sure app.py's frame (root, run picker, navigation) ran.

    Streamlit runs a file of ``pages/`` on its own, without app.py (its legacy pages-folder mode),
    when a freshly started server's first request is that page's URL. Then this runs app.py, which
    draws the frame and runs the requested page inside it, and stops the outer run.
    """
    if st.session_state.pop(_FRAME_KEY, False):
        return
    ctx = get_script_run_ctx()
    if ctx is None:
        return
    runpy.run_path(ctx.main_script_path)
    st.stop()


def model_spec(model: Any) -> str:
    """Short text for a manifest's ``model`` entry (a dict with ``spec``, a list of them, or text)."""
    if isinstance(model, dict):
        return str(model.get("spec") or model.get("name") or "?")
    if isinstance(model, list):
        return " + ".join(model_spec(m) for m in model) or "?"
    return "?" if model is None else str(model)


def data_text(data: Any, max_len: int = 80) -> str:
    """Short text for a manifest's ``data`` entry."""
    if isinstance(data, dict):
        for k in ("description", "spec", "source", "name", "path"):
            if data.get(k):
                text = str(data[k])
                break
        else:
            text = json.dumps(data, sort_keys=True, default=str)
    elif data is None:
        text = ""
    else:
        text = str(data)
    return text if len(text) <= max_len else text[: max_len - 1] + "…"


def _record(e: RunEntry) -> dict[str, Any]:
    m = e.manifest or {}
    run_id = m.get("run_id") if e.run is not None else None
    status = m.get("status") if e.run is not None else e.partial_status if e.partial else "invalid"
    return {
        "path": str(e.path),
        "kind": e.kind,
        "run_id": run_id or e.path.name,
        "model": model_spec(m.get("model")) if m else "",
        "data": data_text(m.get("data")) if m else "",
        "created": str(m.get("created") or ""),
        "finished": str(m.get("finished") or ""),
        "status": str(status or "unknown"),
        "summary": m.get("summary") if isinstance(m.get("summary"), dict) else {},
        "error": e.error,
        "partial": e.partial,
        "ok": e.run is not None,
        "key": e.run.fingerprint if e.run is not None else "",
        "warnings": e.run.warnings if e.run is not None else [],
    }


@st.cache_data(ttl=RUNS_TTL_S, show_spinner=False)
def load_runs(root: str) -> list[dict[str, Any]]:
    """Every run under ``root`` as plain dicts (see :func:`_record`), newest first, manifests only."""
    return [_record(e) for e in list_runs(root)]


def run_label(rec: dict[str, Any]) -> str:
    """``kind · model spec · run_id``: how a run is named in pickers."""
    return f"{rec['kind']} · {rec['model']} · {rec['run_id']}"


@st.cache_resource(max_entries=32, show_spinner=False)
def get_run(path: str, key: str) -> Run:
    """The opened run at ``path``; one object per manifest ``key``, so each file is hash-checked once."""
    return open_run(path)


@st.cache_data(max_entries=64, show_spinner=False)
def load_run_json(path: str, name: str, key: str) -> Any:
    """JSON file ``name`` of the run at ``path``, hash-checked."""
    return get_run(path, key).load_json(name)


def load_optional_json(path: str, name: str, key: str) -> Any | None:
    """As :func:`load_run_json`, or None when the run has no file ``name`` (an optional part of a run)."""
    return load_run_json(path, name, key) if get_run(path, key).has(name) else None


@st.cache_data(max_entries=32, show_spinner=False)
def load_run_npz(path: str, name: str, key: str) -> dict[str, np.ndarray]:
    """Arrays of ``name`` (an ``.npz`` without pickles) of the run at ``path``, hash-checked."""
    return get_run(path, key).load_npz(name)


def run_file(path: str, name: str, key: str) -> str:
    """Hash-checked local path of file ``name`` of the run at ``path`` (e.g. for ``st.image``)."""
    return str(get_run(path, key).file(name))


def current_runs() -> tuple[str, list[dict[str, Any]]]:
    """The artifact root chosen in the sidebar and its runs."""
    root = st.session_state.get(ROOT_KEY, "")
    return root, load_runs(root) if root else []


def picked_run(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run chosen in the sidebar's global picker, if it is among ``records``."""
    path = st.session_state.get(RUN_KEY)
    return next((r for r in records if r["path"] == path and r["ok"]), None)


def choose_run(kinds: tuple[str, ...], what: str, how_to_make: str, key: str | None = None,
               stop_if_none: bool = True) -> dict[str, Any] | None:
    """The run a page shows: the sidebar's pick when it is of one of ``kinds``, else a selectbox.

    ``what`` names the runs ("predictions run"); ``how_to_make`` is the sentence shown when the root
    has none (the page then stops, unless ``stop_if_none`` is false and ``None`` is returned).
    """
    root, records = current_runs()
    runs = [r for r in records if r["ok"] and r["kind"] in kinds]
    if not runs:
        st.info(f"No {' or '.join(f'`{k}`' for k in kinds)} runs under `{root}`. {how_to_make}")
        if stop_if_none:
            st.stop()
        return None
    run = picked_run(runs)
    if run is not None:
        return run
    picked = picked_run(records)
    if picked is not None:
        st.caption(f"The run picked in the sidebar is a `{picked['kind']}` run; choose a {what} here.")
    labels = {r["path"]: run_label(r) for r in runs}
    path = st.selectbox(what[:1].upper() + what[1:], list(labels), format_func=labels.__getitem__, key=key)
    return next(r for r in runs if r["path"] == path)
