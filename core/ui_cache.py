"""Cached run loading for the dashboard: the one module in ``core`` that imports Streamlit.

Listings are cached for a few seconds; run contents are cached under the run's ``key`` (a hash of
its manifest), so a replaced run gets fresh entries.
"""

from __future__ import annotations

import io
import json
import runpy
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.artifacts import Run, RunEntry, list_runs, open_run, runs_signature
from core.viz import md_code

RUNS_SLOT_S = 5
"""While a partial run is listed, the run list is read again at most this often (its job may die unseen)."""
ROOT_KEY = "artifact_root"
RUN_KEY = "run_path"
_FRAME_KEY = "_frame_ran"

# Query parameters of the frame (each page adds its own through url_state).
URL_ROOT = "root"
URL_RUN = "run"
URL_CHARTS = "charts"  # the chart mode of the analysis pages (pages/components/svg_chart.py)
_URL_SEEN = "_url_seen"        # set once the session's first URL has been read
_URL_RUN_WANTED = "_url_run"   # the URL's run, until the session's first run picker looked for it
_RUN_BY_KINDS = "_run_by_kinds"  # kinds of a page -> the run last shown there
_URL_PAGE = "_url_page"        # the page of the previous run (its params are dropped on a page switch)


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


def set_url_param(param: str, value: str | None) -> None:
    """Write ``param=value`` into the page's URL (``None`` removes it). Written on every run, changed or
    not: the browser can drop the query string on a page switch while the server still holds it."""
    if value is None:
        if param in st.query_params:
            del st.query_params[param]
    else:
        st.query_params[param] = value


def url_state(param: str, options: Any, default: Any = None, *, key: str | None = None) -> Any:
    """A selection kept in the URL as ``?param=...``: seeds the widget ``key`` and returns its value.

    Call it right before the widget and give the widget the same ``key`` and the same ``options``,
    and no ``index``/``value`` (the value comes from session state)::

        layer = ui_cache.url_state("layer", names, names[-1], key="sd_layer")
        st.selectbox("Layer", names, key="sd_layer")

    The first time ``key`` is drawn in a session (a fresh page load, a pasted link, or after the
    widget was not drawn for a while), its value is the URL's ``param`` when that names one of
    ``options`` (compared as ``str(option)``), else ``default`` (else the first option). Later its
    session-state value is kept while it is one of ``options`` and reset to ``default`` when it is
    not (the options changed, e.g. another run). Every call writes the value back into the URL, so
    a reload or a copied link restores the view. ``key`` defaults to ``param``. With no options
    the URL loses ``param`` and None is returned.
    """
    key = key or param
    by_text = {str(o): o for o in options}
    if not by_text:
        set_url_param(param, None)
        return None
    fallback = default if default is not None and str(default) in by_text else next(iter(by_text.values()))
    if key in st.session_state and str(st.session_state[key]) in by_text:
        value = st.session_state[key]
    else:
        if key not in st.session_state:
            value = by_text.get(st.query_params.get(param, ""), fallback)
        else:
            value = fallback
        st.session_state[key] = value
    set_url_param(param, str(value))
    return value


def url_list_state(param: str, options: Any, default: Any = (), *, key: str | None = None) -> list[Any]:
    """As :func:`url_state` for a multiselect: the URL holds the chosen options as ``param=a,b,c``.

    Options named in the URL that are not among ``options`` are dropped; an empty URL value means
    none chosen. Call it right before ``st.multiselect(label, options, key=key)`` (no ``default``).
    """
    key = key or param
    by_text = {str(o): o for o in options}
    if key in st.session_state and all(str(v) in by_text for v in st.session_state[key] or []):
        value = list(st.session_state[key] or [])
    else:
        text = st.query_params.get(param) if key not in st.session_state else None
        if text is not None:
            value = [by_text[t] for t in text.split(",") if t in by_text]
        else:
            value = [o for o in default if str(o) in by_text]
        st.session_state[key] = value
    set_url_param(param, ",".join(str(v) for v in value))
    return value


def read_url_once(root_key: str) -> None:
    """At the start of a session (a page load or a pasted link): the URL's root goes into the text
    input ``root_key`` and its run is kept for the first run picker (see :func:`pick_run`)."""
    if st.session_state.get(_URL_SEEN):
        return
    st.session_state[_URL_SEEN] = True
    root = st.query_params.get(URL_ROOT)
    if root:
        st.session_state[root_key] = root
    run = st.query_params.get(URL_RUN)
    if run:
        st.session_state[_URL_RUN_WANTED] = run


def page_switched(page_id: str) -> bool:
    """True when ``page_id`` differs from the previous run's page (not on a session's first run);
    the previous page's query parameters are then dropped from the URL, root, run and chart mode kept."""
    previous = st.session_state.get(_URL_PAGE)
    st.session_state[_URL_PAGE] = page_id
    if previous is None or previous == page_id:
        return False
    for param in list(st.query_params):
        if param not in (URL_ROOT, URL_RUN, URL_CHARTS):
            del st.query_params[param]
    return True


def run_url_id(rec: dict[str, Any]) -> str:
    """How a run is named in the URL: its run id (``kind/run_id`` is accepted too)."""
    return str(rec["run_id"])


def _matches(rec: dict[str, Any], text: str) -> bool:
    name = Path(rec["path"]).name
    return text in (str(rec["run_id"]), name, f"{rec['kind']}/{rec['run_id']}", f"{rec['kind']}/{name}")


def pick_run(runs: list[dict[str, Any]], kinds: tuple[str, ...] | None) -> str:
    """Path of the run the sidebar picker shows among ``runs`` (the complete runs of the page's
    ``kinds``, newest first; ``None``: every kind), stored in ``st.session_state[RUN_KEY]``.

    In order: the URL's run at a session's start; the current pick when it is of these kinds; the
    run last shown on a page of these kinds; the newest run of ``kinds[0]`` (then of the other kinds).
    """
    paths = [r["path"] for r in runs]
    wanted = st.session_state.get(_URL_RUN_WANTED)
    memory = st.session_state.setdefault(_RUN_BY_KINDS, {})
    chosen = None
    if wanted:  # the link's run, for the page of the link only
        chosen = next((r["path"] for r in runs if _matches(r, wanted)), None)
        st.session_state.pop(_URL_RUN_WANTED, None)
    if chosen is None and st.session_state.get(RUN_KEY) in paths:
        chosen = st.session_state[RUN_KEY]
    if chosen is None and memory.get(kinds) in paths:
        chosen = memory[kinds]
    if chosen is None:
        order = [*(kinds or ()), None]
        chosen = next(r["path"] for k in order for r in runs if k is None or r["kind"] == k)
    st.session_state[RUN_KEY] = chosen
    return chosen


def run_shown(rec: dict[str, Any] | None, kinds: tuple[str, ...] | None) -> None:
    """Remember ``rec`` as the run of pages of ``kinds`` and put it into the URL (None: no run)."""
    if rec is None:
        set_url_param(URL_RUN, None)
        return
    st.session_state.setdefault(_RUN_BY_KINDS, {})[kinds] = rec["path"]
    set_url_param(URL_RUN, run_url_id(rec))


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


def load_runs(root: str) -> list[dict[str, Any]]:
    """Every run under ``root`` as plain dicts (see :func:`_record`), newest first, manifests only; read again
    only when a run folder or manifest changed (:func:`core.artifacts.runs_signature`: a few stats per run)."""
    return _load_runs(root, runs_signature(root, RUNS_SLOT_S))


@st.cache_data(max_entries=16, show_spinner=False)
def _load_runs(root: str, signature: tuple) -> list[dict[str, Any]]:
    """``signature`` (unused in the body) keys the cache."""
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
    """Hash-checked local path of file ``name`` of the run at ``path`` (e.g. for ``st.image``).

    Only plain names inside the run folder, never through a symlink (else a RunError)."""
    return str(get_run(path, key).file(name))


@st.cache_data(max_entries=64, show_spinner=False)
def load_run_image(path: str, name: str, key: str) -> np.ndarray:
    """Image file ``name`` of the run at ``path`` as ``(H, W, 3)`` uint8 RGB, hash-checked; an image that
    cannot be decoded is a RunError naming the run and file (not a PIL error)."""
    return get_run(path, key).load_image(name)


def read_run_bytes(path: str, name: str, key: str) -> bytes:
    """Bytes of file ``name`` of the run at ``path``, hash-checked (RunError when it cannot be read)."""
    return get_run(path, key).read_bytes(name)


@st.cache_data(max_entries=2048, show_spinner=False)
def thumbnail(path: str, name: str, key: str, size: int = 256) -> bytes:
    """PNG bytes of image ``name`` of the run at ``path`` fitted (padded) into a ``size`` square, made
    once per run version: the same bytes give the same media URL, so a rerun re-sends nothing new."""
    from core.viz import thumbnail as fit

    image = get_run(path, key).load_image(name)  # an undecodable image is a RunError, not a PIL error
    buf = io.BytesIO()
    Image.fromarray(fit(image, size)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def current_runs() -> tuple[str, list[dict[str, Any]]]:
    """The artifact root chosen in the sidebar and its runs."""
    root = st.session_state.get(ROOT_KEY, "")
    return root, load_runs(root) if root else []


COMPARE_KEY = "compare_runs"
"""Session key: the run records the sidebar's "Compare with" picked (other runs of the shown run's kind)."""


def compared_runs(kind: str) -> list[dict[str, Any]]:
    """The runs of ``kind`` picked in the sidebar to compare with the shown run (the page and the report lay
    them side by side); [] when none."""
    return [r for r in st.session_state.get(COMPARE_KEY) or [] if r.get("kind") == kind and r.get("ok")]


def picked_run(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run chosen in the sidebar's global picker, if it is among ``records``."""
    path = st.session_state.get(RUN_KEY)
    return next((r for r in records if r["path"] == path and r["ok"]), None)


def choose_run(kinds: tuple[str, ...], what: str, how_to_make: str, key: str | None = None,
               stop_if_none: bool = True) -> dict[str, Any] | None:
    """The run a page shows: the sidebar's pick when it is of one of ``kinds``, else a selectbox.

    app.py's sidebar lists only the runs of the page's kinds (``PAGE_KINDS``), newest of its own kind
    first, and keeps the pick in the URL's ``run``; the selectbox is for a page missing there.

    ``what`` names the runs ("predictions run"); ``how_to_make`` is the sentence shown when the root
    has none (the page then stops, unless ``stop_if_none`` is false and ``None`` is returned).
    """
    root, records = current_runs()
    runs = [r for r in records if r["ok"] and r["kind"] in kinds]
    if not runs:
        st.info(f"No {' or '.join(f'`{k}`' for k in kinds)} runs under {md_code(root)}. {how_to_make}")
        if stop_if_none:
            st.stop()
        return None
    run = picked_run(runs)
    if run is not None:
        return run
    picked = picked_run(records)
    if picked is not None:
        st.caption(f"The run picked in the sidebar is a {md_code(picked['kind'])} run; choose a {what} here.")
    labels = {r["path"]: run_label(r) for r in runs}
    path = st.selectbox(what[:1].upper() + what[1:], list(labels), format_func=labels.__getitem__, key=key)
    run = next(r for r in runs if r["path"] == path)
    set_url_param(URL_RUN, run_url_id(run))  # the URL names the run shown, not the sidebar's
    return run
