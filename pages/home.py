"""Runs: what Concept Lens does, and every run found under the artifact root."""

from __future__ import annotations

import streamlit as st

from core import ui_cache, viz
from core.viz import md_code, md_text
from pages.components import tables

ui_cache.require_frame()
st.title("Concept Lens")
st.markdown(
    "Look inside image and video models. Offline jobs (`python -m precompute ...`) run a model over "
    "images or videos and write **runs** to an artifact folder; this dashboard opens them and draws "
    "them, without running a model. Analyses: per-image **predictions** and layer features; "
    "**static vs dynamic** units (which channels respond to appearance, which to motion); "
    "**VTCD** concepts (spatiotemporal tubelets clustered into concepts per layer, ranked by importance); "
    "and **VCC** connectomes (how concepts in one layer build those in the next)."
)

root, records = ui_cache.current_runs()
complete = [r for r in records if r["ok"]]
partial = [r for r in records if r["partial"]]
invalid = [r for r in records if not r["ok"] and not r["partial"]]

if not records:
    st.info(
        f"No runs under {md_code(root)}. Make the demo runs with `python -m precompute demo`, "
        "or point the artifact root in the sidebar (or `streamlit run app.py -- --root DIR`, "
        "or `CONCEPT_LENS_ARTIFACTS=DIR`) at a folder of runs."
    )
    st.stop()

st.subheader(f"Runs ({len(complete)})")
if complete:
    table = viz.runs_table(complete)
    tables.table(table, height="content" if len(table) <= 25 else "auto", column_config={
        "model": st.column_config.TextColumn(width="medium"),
        "summary": st.column_config.TextColumn(width="large"),
        "warnings": st.column_config.NumberColumn(
            help="Degenerate-result warnings the job recorded (an empty layer, too few images, ...); "
                 "each run's page shows them beside the figure they affect"),
        "data": st.column_config.TextColumn(width="medium"),
    })
    st.download_button("Download table (CSV)", table.to_csv(index=False), file_name="runs.csv",
                       mime="text/csv", on_click="ignore")
    warned = [r for r in complete if r.get("warnings")]
    if warned:
        st.caption(f"{len(warned)} run{'s' if len(warned) != 1 else ''} recorded warnings (column *warnings*); "
                   "open the run's page to see them.")
    st.caption("Pick a run in the sidebar; its page is in the navigation above it.")
else:
    st.caption("No complete runs.")

if invalid:
    st.subheader(f"Runs that cannot be opened ({len(invalid)})")
    for r in invalid:
        st.error(f"**{md_text(r['kind'])}/{md_text(r['run_id'])}** — {md_text(r['error'])}")

if partial:
    st.subheader(f"Incomplete runs ({len(partial)})")
    st.warning("Incomplete — rerun the same command to resume: finished parts are kept and reused.")
    tables.table(viz.partial_table(partial))
