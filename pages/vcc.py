"""Concept connectome: a class's VCC as a clickable graph, one concept in detail, graph metrics and validation
(dissertation ch. 5)."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

from core import ui_cache, viz
from core import viz_vcc as vv
from core.errors import RunError
from core.vcc import store as vcc_store
from pages.components import run_warnings, tables, vcc_graph
from pages.components.gallery import Tile, gallery
from pages.components.lazy_tabs import lazy_tabs
from pages.components.svg_chart import chart, light

KIND = "vcc"
MEMBERS_PER_PAGE = 12
IMAGES_PER_PAGE = 16
THUMB = 160
# Where a run's warnings are shown: page part -> the ``figure`` ids that go there (a layer's warning
# without a figure goes beside the graph; any other at the top).
WARNING_PLACES = {"graph": ("graph", "concepts", "layer"), "metrics": ("metrics",),
                  "validation": ("suppression", "fidelity", "aps", "validation")}

ui_cache.require_frame()
st.title("Concept connectome")

run = ui_cache.choose_run((KIND,), "VCC run", "Make one with `python -m precompute vcc --model ... --target-class "
                          "... --images ...`, or point the artifact root in the sidebar at a folder that has them.",
                          key="vcc_run")
md, code = vv.md_text, vv.md_code


def load_json(rec: dict[str, Any], name: str) -> Any:
    return ui_cache.load_run_json(rec["path"], name, rec["key"])


def read_file(rec: dict[str, Any], name: str) -> bytes:
    return ui_cache.read_run_bytes(rec["path"], name, rec["key"])


@st.cache_data(max_entries=16, show_spinner=False)
def graph_thumbs(path: str, key: str, graph_file: str) -> dict[str, str]:
    """Node id -> its first exemplar as a ``data:`` URI (small files the job wrote)."""
    graph = ui_cache.load_run_json(path, graph_file, key)
    return vv.thumbs_for(graph, lambda f: read_file({"path": path, "key": key}, f))


@st.cache_data(max_entries=256, show_spinner=False)
def member_overlay(path: str, key: str, image_file: str, segments_file: str, sid: int, size: int) -> np.ndarray:
    """Segment ``sid`` over its source image (the rest dimmed), at most ``size`` pixels a side."""
    masks = ui_cache.load_run_npz(path, segments_file, key)["segment_masks"]
    im = Image.fromarray(ui_cache.load_run_image(path, image_file, key))  # undecodable: RunError, not PIL's
    im.thumbnail((size, size))
    return vv.segment_overlay(np.asarray(im), masks[sid])


def error(e: Exception) -> None:
    st.error(md(e))


warnings = run.get("warnings") or []
run_warnings.show(warnings, "top", WARNING_PLACES, "graph")
try:
    classes = load_json(run, vcc_store.CLASSES)
except RunError as e:
    error(e)
    st.stop()
if not classes:
    st.warning(f"Run {code(run['run_id'])} holds no finished class.")
    st.stop()

by_slug = {c["slug"]: c for c in classes}
class_key = f"vcc_class-{run['run_id']}"
slug = ui_cache.url_state("class", list(by_slug), key=class_key)
slug = st.selectbox("Class", list(by_slug), key=class_key,
                    format_func=lambda s: f"{by_slug[s]['class_name']} (class {by_slug[s]['class_index']})")
entry = by_slug[slug]
try:
    graph = load_json(run, vcc_store.class_file(entry, vcc_store.GRAPH))
    metrics = load_json(run, vcc_store.class_file(entry, vcc_store.METRICS))
    fidelity = load_json(run, vcc_store.class_file(entry, vcc_store.FIDELITY))
    images = load_json(run, vcc_store.class_file(entry, vcc_store.IMAGES))
except RunError as e:
    error(e)
    st.stop()

layers = graph["layers"]
concepts = vv.concept_nodes(graph)
kept = [e for e in graph["edges"] if e.get("significant")]
n_aug = entry.get("n_augmented") or 0
hits = sum(bool(im.get("correct")) for im in images)
st.caption(
    f"{code(run['run_id'])} · model {code(run['model'])} · class **{md(entry['class_name'])}** "
    f"({md(entry['class_index'])}) · {md(entry['n_images'])} images" + (
        " (no labelled photo: crops and flips of the photos that the model predicts as this class, its own view "
        "of the class)" if entry.get("selected_by") == "prediction"
        else f" ({md(n_aug)} of them crops and flips of {md(entry.get('n_photos'))} photos)" if n_aug else "")
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


def exemplars(node: dict[str, Any]) -> None:
    """The node's members nearest the centroid over their images, the other members a page at a time."""
    seg_file = vcc_store.class_file(entry, vcc_store.SEGMENTS)
    try:
        arrays = ui_cache.load_run_npz(run["path"], seg_file, run["key"])
    except RunError as e:
        error(e)
        return
    shown = node["exemplars"] or node["members"][:4]

    def tile(sid: int, size: int, caption: bool) -> Tile:
        try:
            im = images[int(arrays["segment_image"][sid])]
            picture = member_overlay(run["path"], run["key"], im["file"], seg_file, int(sid), size)
        except (RunError, IndexError, KeyError, ValueError) as e:
            return Tile(None, problem=str(e))
        return Tile(picture, str(im["id"]) + (f" · segment {int(sid)} · {arrays['segment_masks'][sid].mean():.0%} "
                                              "of the image" if caption else ""))

    st.caption(f"Its {len(shown)} members nearest the centroid, each over its source image (the rest dimmed); "
               f"the concept has {md(node['size'])} segments, {len(node['members'])} kept as members.")
    gallery([tile(sid, 320, True) for sid in shown], key=f"vcc_exemplars-{node['id']}", columns=max(len(shown), 4))
    more = [m for m in node["members"] if m not in set(shown)]
    if more and st.toggle(f"Show the other {len(more)} members", key=f"vcc_more-{node['id']}"):
        pages = -(-len(more) // MEMBERS_PER_PAGE)
        page = st.number_input("Page", 1, pages, 1, key=f"vcc_more_page-{node['id']}") if pages > 1 else 1
        chunk = more[(page - 1) * MEMBERS_PER_PAGE: page * MEMBERS_PER_PAGE]
        gallery([tile(sid, THUMB, False) for sid in chunk], key=f"vcc_more_tiles-{node['id']}", columns=6)


# -- the graph and the clicked concept (a fragment: a click or a slider reruns only this part) ------------------
@st.fragment
def connectome() -> None:
    st.subheader("Connectome")
    lo, hi = vv.weight_range(graph)
    left, right = st.columns([3, 2])
    threshold = left.slider("Hide edges lighter than", 0.0, 1.0, 0.0, 0.01, key="vcc_threshold",
                            help="Minimum edge weight drawn (weights are in [0, 1])")
    show_all = right.toggle("Also draw edges that fail the t-test (dotted)", key="vcc_insignificant")
    node_key = f"vcc_node-{run['run_id']}-{slug}"
    vcc_graph.pick_node(graph, node_key)
    thumbs = graph_thumbs(run["path"], run["key"], vcc_store.class_file(entry, vcc_store.GRAPH))
    vcc_graph.clickable_graph(graph, thumbs, node_key=node_key, chart_key=f"vcc_graph-{run['run_id']}-{slug}",
                              revision=f"{run['run_id']}-{slug}", filename=f"{run['run_id']}-{slug}-connectome",
                              threshold=float(threshold), show_insignificant=bool(show_all))
    st.caption(f"Rows from the input side (bottom: {code(layers[0])}) to the class node (top); edges point up. "
               "Picture: the concept's nearest member, its size the concept's segments; edge width and opacity: "
               f"weight ({lo:.2f}–{hi:.2f} here). **Click a concept** to open it below; hover for its edges"
               + ("." if light() else "; scroll to zoom, drag to pan, double-click to reset."))
    run_warnings.show(warnings, "graph", WARNING_PLACES, "graph")

    st.subheader("Concept")
    node_id = vcc_graph.node_select(graph, node_key)
    vcc_graph.node_panel(graph, node_id, exemplars, "vcc")


connectome()


# -- metrics across classes and runs ----------------------------------------------------------------------------
def metrics_part() -> None:
    st.subheader("Graph metrics per layer")
    run_warnings.show(warnings, "metrics", WARNING_PLACES)
    options: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    runs = [r for r in ui_cache.current_runs()[1] if r["ok"] and r["kind"] == KIND]
    for r in runs:
        try:
            for ce in load_json(r, vcc_store.CLASSES):
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
            series[label] = load_json(r, vcc_store.class_file(ce, vcc_store.METRICS))
        except RunError as e:
            st.warning(md(e))
    if not series:
        st.caption("Pick at least one VCC.")
        return
    chart(vv.metrics_figure(series), config=viz.plotly_config(f"{run['run_id']}-vcc-metrics"),
          key="vcc_metrics")
    table = vv.metrics_table(series)
    box = st.expander("Metrics table", key="vcc_metrics_table", on_change="rerun")
    if box.open:  # drawn when opened
        with box:
            tables.table(table, hide_index=True, width="stretch")
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



# -- validation -----------------------------------------------------------------------------------------------
def validation() -> None:
    st.subheader("Validation")
    run_warnings.show(warnings, "validation", WARNING_PLACES)
    if not fidelity.get("enabled", True):
        st.caption("This run was made with `--no-fidelity`: no suppression curves nor APS / LS.")
        return
    st.markdown("**Concept suppression.** Each concept's direction (its centroid) is subtracted from the layer's "
                "activations at every position, at increasing strength eps; the target-class accuracy over the "
                "class images should fall faster than when random directions are subtracted. Two baselines: "
                "isotropic random directions, and random directions matched to the centroids (which are means of "
                "non-negative features, so they point into the positive orthant, as random directions do not): "
                + ("centroids of random sets of the layer's segments of the concepts' sizes."
                   if fidelity.get("matched_kind") == "segments" else
                   "random non-negative directions." if fidelity.get("matched_kind") == "nonnegative" else
                   "this run has none (made before it, or with `--matched-random off`)."))
    chart(partial(vv.suppression_figure, fidelity, layers), spec=("vcc_supp", run["path"], run["key"], slug),
          config=viz.plotly_config(f"{run['run_id']}-{slug}-suppression"), key="vcc_suppression")
    supp = vv.suppression_table(fidelity, layers)
    tables.table(supp, hide_index=True, width="stretch",
                 column_config={k: st.column_config.NumberColumn(format="%.3f")
                                for k in ("AUC concepts", "AUC isotropic random", "AUC matched random")})
    st.caption("AUC: the area under the mean accuracy curve divided by the eps range (the mean accuracy over it); "
               "lower is a faster fall. Empty cells: no concept at that layer, or no such baseline in this run.")
    every = st.toggle("APS over every edge (also those failing the t-test)", key="vcc_aps_all",
                      help="With only significant edges, a concept without a path to the class has no APS")
    chart(partial(vv.aps_ls_figure, fidelity, all_edges=every), spec=("vcc_aps", run["path"], run["key"], slug, every),
          config=viz.plotly_config(f"{run['run_id']}-{slug}-aps-ls"), key="vcc_aps")
    st.caption("APS (eq. 5.8): a concept's mean path strength to the class node over all its paths. LS (eq. 5.9): "
               "the class logit summed over its member segments. A connectome faithful to the model ranks concepts "
               "alike by both.")



# -- the images (a page at a time) ----------------------------------------------------------------------------
def discovery_images() -> None:
    wrong = [im for im in images if im.get("correct") is False]
    st.subheader("Discovery images")
    st.caption(f"{len(images)} images, {len(wrong)} misclassified: every image the concepts were found in, with the "
               "model's top-1 prediction. Open a misclassified one in the **Failure debugger** after "
               f"`python -m precompute vcc-debug --model ... --runs {md(run['run_id'])}` (its predicted class needs "
               "a VCC too)." + (" Images named `~aug` are crops and flips of a photo." if n_aug else ""))
    only = st.toggle("Only misclassified", key="vcc_images_wrong", disabled=not wrong)
    shown = wrong if only and wrong else images
    pages = -(-len(shown) // IMAGES_PER_PAGE)
    page = st.number_input(f"Page (of {pages})", 1, max(pages, 1), 1, key="vcc_images_page") if pages > 1 else 1
    chunk = shown[(page - 1) * IMAGES_PER_PAGE: page * IMAGES_PER_PAGE]
    tiles = []
    for im in chunk:
        caption = viz.tile_caption({**im, "label_name": entry["class_name"]})
        try:
            tiles.append(Tile(ui_cache.thumbnail(run["path"], im["file"], run["key"], THUMB), caption))
        except RunError as e:
            tiles.append(Tile(None, caption, problem=str(e)))
    gallery(tiles, key="vcc_images_tiles", columns=8)



@st.fragment
def below() -> None:
    """Metrics, validation and the images in tabs, only the open one drawn (a tab switch reruns this part)."""
    lazy_tabs({"Validation": validation, "Graph metrics": metrics_part, "Discovery images": discovery_images},
              key="vcc_section")


below()
