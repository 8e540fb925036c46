"""Concept connectome: a class's VCC as a clickable graph, one concept in detail, graph metrics and validation
(dissertation ch. 5)."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

from core import ui_cache, viz
from core import viz_vcc as vv
from core.errors import RunError

KIND = "vcc"
GRAPH_HEIGHT = 620

ui_cache.require_frame()
st.title("Concept connectome")

run = ui_cache.choose_run((KIND,), "VCC run", "Make one with `python -m precompute vcc --model ... --target-class "
                          "... --images ...`, or point the artifact root in the sidebar at a folder that has them.",
                          key="vcc_run")


def load_json(rec: dict[str, Any], name: str) -> Any:
    return ui_cache.load_run_json(rec["path"], name, rec["key"])


def read_file(rec: dict[str, Any], name: str) -> bytes:
    with open(ui_cache.run_file(rec["path"], name, rec["key"]), "rb") as f:
        return f.read()


@st.cache_data(max_entries=16, show_spinner=False)
def graph_page(path: str, key: str, graph_file: str, threshold: float, show_insignificant: bool) -> str:
    """The pyvis HTML of one class's graph (thumbnails inlined)."""
    rec = {"path": path, "key": key}
    graph = ui_cache.load_run_json(path, graph_file, key)
    thumbs = vv.thumbs_for(graph, lambda f: read_file(rec, f))
    return vv.graph_html(graph, thumbs, threshold=threshold, show_insignificant=show_insignificant,
                         height=GRAPH_HEIGHT)


def image_array(rec: dict[str, Any], name: str) -> np.ndarray:
    with Image.open(ui_cache.run_file(rec["path"], name, rec["key"])) as im:
        return np.asarray(im.convert("RGB"))


try:
    classes = load_json(run, "classes.json")
except RunError as e:
    st.error(str(e))
    st.stop()
if not classes:
    st.warning(f"Run `{run['run_id']}` holds no finished class.")
    st.stop()

by_slug = {c["slug"]: c for c in classes}
slug = st.selectbox("Class", list(by_slug), key=f"vcc_class-{run['run_id']}",
                    format_func=lambda s: f"{by_slug[s]['class_name']} (class {by_slug[s]['class_index']})")
entry = by_slug[slug]
base = entry.get("dir") or f"classes/{slug}"
try:
    graph = load_json(run, f"{base}/graph.json")
    metrics = load_json(run, f"{base}/metrics.json")
    fidelity = load_json(run, f"{base}/fidelity.json")
    images = load_json(run, f"{base}/images.json")
except RunError as e:
    st.error(str(e))
    st.stop()

layers = graph["layers"]
concepts = vv.concept_nodes(graph)
kept = [e for e in graph["edges"] if e.get("significant")]
n_aug = entry.get("n_augmented") or 0
hits = sum(bool(im.get("correct")) for im in images)
st.caption(
    f"`{run['run_id']}` · model `{run['model']}` · class **{entry['class_name']}** ({entry['class_index']}) · "
    f"{entry['n_images']} images" + (
        " (no labelled photo: crops and flips of the photos that the model predicts as this class, its own view "
        "of the class)" if entry.get("selected_by") == "prediction"
        else f" ({n_aug} of them crops and flips of {entry.get('n_photos')} photos)" if n_aug else "")
    + f" · top-1 correct on {hits}/{len(images)} · {len(layers)} layers · {len(concepts)} concepts · "
    f"{len(kept)} of {len(graph['edges'])} edges significant"
)
st.markdown(
    "Each layer's **concepts** are clusters of image segments that the layer represents alike (segments come "
    "top-down: the deepest layer splits each image, each shallower layer splits those pieces further). An "
    "**edge** from a concept to one in the next layer (or to the class) has weight = the share of the upper "
    "concept's segments whose objective increases along the lower concept's direction (ITCAV), averaged over "
    "random sets; edges that do not beat a random pseudo-concept in a paired t-test are hidden."
)

# -- the graph ------------------------------------------------------------------------------------------------
st.subheader("Connectome")
lo, hi = vv.weight_range(graph)
left, right = st.columns([3, 2])
threshold = left.slider("Hide edges lighter than", 0.0, 1.0, 0.0, 0.01, key="vcc_threshold",
                        help="Minimum edge weight drawn (weights are in [0, 1])")
show_all = right.toggle("Also draw edges that fail the t-test (dashed)", key="vcc_insignificant")
html = graph_page(run["path"], run["key"], f"{base}/graph.json", float(threshold), bool(show_all))
st.iframe(html, height=GRAPH_HEIGHT + 100)
st.caption(f"Levels from the input side (bottom: `{layers[0]}`) to the class node (top). Node size: segments in "
           f"the concept; picture: its nearest member; edge width and opacity: weight ({lo:.2f}–{hi:.2f} here). "
           "Hover or click a node in the graph for its tooltip. Streamlit cannot receive clicks from inside the "
           "graph, so pick the concept to inspect below.")

# -- one concept ----------------------------------------------------------------------------------------------
st.subheader("Concept")
ids = [n["id"] for n in graph["nodes"]]
nodes = vv.node_by_id(graph)
node_key = f"vcc_node-{run['run_id']}-{slug}"
if st.session_state.get(node_key) not in ids:  # default: the largest concept of the deepest layer that has any
    st.session_state[node_key] = next((n["id"] for layer in layers[::-1] for n in concepts
                                       if n["layer"] == layer and n["index"] == 0), ids[-1])
node_id = st.selectbox("Node", ids, key=node_key, format_func=lambda i: f"{i} · {vv.node_text(nodes[i])}")
node = nodes[node_id]
inc, out = vv.edges_table(graph, node_id, "in"), vv.edges_table(graph, node_id, "out")
a, b, c, d = st.columns(4)
a.metric("layer", node["layer"])
b.metric("segments" if not vv.is_class(node) else "images", node["size"])
c.metric("significant edges in", int(inc["significant"].sum()) if len(inc) else 0)
d.metric("significant edges out", int(out["significant"].sum()) if len(out) else 0)

if vv.is_class(node):
    st.caption("The class node: its incoming edges are plain TCAV scores of the last layer's concepts for the class "
               "logit over the class images.")
else:
    try:
        arrays = ui_cache.load_run_npz(run["path"], f"{base}/segments.npz", run["key"])
    except RunError as e:
        st.error(str(e))
        arrays = None
    if arrays is not None:
        shown = node["exemplars"] or node["members"][:4]
        st.caption(f"Its {len(shown)} members nearest the centroid, each over its source image (the rest dimmed); "
                   f"the concept has {node['size']} segments, {len(node['members'])} kept as members.")
        cols = st.columns(max(len(shown), 1))
        for col, sid in zip(cols, shown, strict=False):
            img_index = int(arrays["segment_image"][sid])
            im = images[img_index]
            try:
                pic = vv.segment_overlay(image_array(run, im["file"]), arrays["segment_masks"][sid])
            except RunError as e:
                col.warning(str(e))
                continue
            col.image(pic, width="stretch")
            col.caption(f"`{im['id']}` · segment {sid} · {arrays['segment_masks'][sid].mean():.0%} of the image")
        if len(node["members"]) > len(shown):
            with st.expander(f"More members ({len(node['members']) - len(shown)})"):
                more = node["members"][len(shown):]
                per_row = 6
                for start in range(0, len(more), per_row):
                    for col, sid in zip(st.columns(per_row), more[start:start + per_row], strict=False):
                        im = images[int(arrays["segment_image"][sid])]
                        col.image(vv.segment_overlay(image_array(run, im["file"]), arrays["segment_masks"][sid]),
                                  width="stretch")
                        col.caption(f"`{im['id']}`")

edge_cfg = {"weight": st.column_config.NumberColumn(format="%.3f"),
            "p_value": st.column_config.NumberColumn("p-value", format="%.4f")}
left, right = st.columns(2)
with left:
    st.markdown(f"**Incoming edges** ({len(inc)})")
    if len(inc):
        st.dataframe(inc, hide_index=True, width="stretch", column_config=edge_cfg)
    else:
        st.caption("none: the first analysed layer has no incoming edges" if node["layer"] == layers[0]
                   else "none")
with right:
    st.markdown(f"**Outgoing edges** ({len(out)})")
    if len(out):
        st.dataframe(out, hide_index=True, width="stretch", column_config=edge_cfg)
    else:
        st.caption("none")

# -- metrics across classes and runs ----------------------------------------------------------------------------
st.subheader("Graph metrics per layer")
options: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
runs = [r for r in ui_cache.current_runs()[1] if r["ok"] and r["kind"] == KIND]
for r in runs:
    try:
        for ce in load_json(r, "classes.json"):
            options[f"{r['run_id']} · {ce['class_name'].split(',')[0]}"] = (r, ce)
    except RunError:
        continue
default = [k for k, (r, _) in options.items() if r["path"] == run["path"]][:6]
chosen = st.multiselect("VCCs to compare (any class of any run)", list(options), default=default,
                        key=f"vcc_compare-{run['run_id']}")
series = {}
for label in chosen:
    r, ce = options[label]
    try:
        series[label] = load_json(r, f"{ce.get('dir') or 'classes/' + ce['slug']}/metrics.json")
    except RunError as e:
        st.warning(str(e))
if series:
    st.plotly_chart(vv.metrics_figure(series), config=viz.plotly_config(f"{run['run_id']}-vcc-metrics"),
                    key="vcc_metrics")
    table = vv.metrics_table(series)
    with st.expander("Metrics table"):
        st.dataframe(table, hide_index=True, width="stretch")
        st.download_button("Download metrics (CSV)", table.to_csv(index=False),
                           file_name=f"{run['run_id']}-vcc-metrics.csv", mime="text/csv", on_click="ignore")
    grouping = vv.weight_grouping(series)
    where = ("the significant edges leaving the layer (grouped by source layer, as the authors' analysis; the "
             "class node has none)" if grouping == {"source"} else
             "the significant edges pointing into the layer (grouped by target layer)" if grouping == {"target"} else
             "the significant edges grouped by source layer for some of these VCCs and by target layer for others "
             "(column `grouped_by`)")
    st.caption(f"Branching factor: mean number of significant incoming edges per concept. Mean edge weight and "
               f"edge-weight variance: over {where}.")
else:
    st.caption("Pick at least one VCC.")

# -- validation -----------------------------------------------------------------------------------------------
st.subheader("Validation")
if not fidelity.get("enabled", True):
    st.caption("This run was made with `--no-fidelity`: no suppression curves nor APS / LS.")
else:
    st.markdown("**Concept suppression.** Each concept's direction (its centroid) is subtracted from the layer's "
                "activations at every position, at increasing strength eps; the target-class accuracy over the "
                "class images should fall faster than when random directions are subtracted. Two baselines: "
                "isotropic random directions, and random directions matched to the centroids (which are means of "
                "non-negative features, so they point into the positive orthant, as random directions do not): "
                + ("centroids of random sets of the layer's segments of the concepts' sizes."
                   if fidelity.get("matched_kind") == "segments" else
                   "random non-negative directions." if fidelity.get("matched_kind") == "nonnegative" else
                   "this run has none (made before it, or with `--matched-random off`)."))
    st.plotly_chart(vv.suppression_figure(fidelity, layers), config=viz.plotly_config(f"{run['run_id']}-{slug}-"
                                                                                     "suppression"),
                    key="vcc_suppression")
    supp = vv.suppression_table(fidelity, layers)
    st.dataframe(supp, hide_index=True, width="stretch",
                 column_config={k: st.column_config.NumberColumn(format="%.3f")
                                for k in ("AUC concepts", "AUC isotropic random", "AUC matched random")})
    st.caption("AUC: the area under the mean accuracy curve divided by the eps range (the mean accuracy over it); "
               "lower is a faster fall. Empty cells: no concept at that layer, or no such baseline in this run.")
    every = st.toggle("APS over every edge (also those failing the t-test)", key="vcc_aps_all",
                      help="With only significant edges, a concept without a path to the class has no APS")
    st.plotly_chart(vv.aps_ls_figure(fidelity, all_edges=every),
                    config=viz.plotly_config(f"{run['run_id']}-{slug}-aps-ls"), key="vcc_aps")
    st.caption("APS (eq. 5.8): a concept's mean path strength to the class node over all its paths. LS (eq. 5.9): "
               "the class logit summed over its member segments. A connectome faithful to the model ranks concepts "
               "alike by both.")

# -- the images -----------------------------------------------------------------------------------------------
wrong = [im for im in images if im.get("correct") is False]
with st.expander(f"Discovery images ({len(images)}; {len(wrong)} misclassified)"):
    st.caption("Every image the concepts were found in, with the model's top-1 prediction. Open a misclassified one "
               "in the **Failure debugger** after `python -m precompute vcc-debug --model ... --runs "
               f"{run['run_id']}` (its predicted class needs a VCC too)."
               + (" Images named `~aug` are crops and flips of a photo." if n_aug else ""))
    per_row = 8
    for start in range(0, len(images), per_row):
        for col, im in zip(st.columns(per_row), images[start:start + per_row], strict=False):
            try:
                col.image(viz.thumbnail(ui_cache.run_file(run["path"], im["file"], run["key"]), 160), width="stretch")
            except RunError as e:
                col.warning(str(e))
            col.caption(viz.tile_caption({**im, "label_name": entry["class_name"]}))
