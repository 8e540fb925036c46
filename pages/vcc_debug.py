"""Failure debugger: why a model got an image wrong, through the VCCs of its true and predicted classes
(dissertation 5.5)."""

from __future__ import annotations

import functools
import hashlib
import html
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

from core import svg_figures, ui_cache, viz
from core import viz_vcc as vv
from core.errors import RunError, UserError
from core.vcc import store as vcc_store
from pages.components import run_warnings, tables, vcc_graph
from pages.components.choice import choice
from pages.components.figure_export import export_buttons
from pages.components.gallery import Tile, gallery
from pages.components.lazy_tabs import lazy_tabs
from pages.components.metrics import Metric, metric_row
from pages.components.svg_chart import light, svg_chart

KIND = "vcc-debug"
VCC_KIND = "vcc"
GRAPH_HEIGHT = 500
SOURCES = ("From a vcc-debug run", "Upload an image")
UPLOAD = "vccd_upload_result"
WARNING_PLACES = {"graph": ("graph", "concepts", "layer"), "shares": ("shares", "segments")}
md, code = vv.md_text, vv.md_code

ui_cache.require_frame()
st.title("Failure debugger")
LIGHT = light()
st.markdown(
    "An image of true class **C** that the model calls **P**: the image is cut into segments top-down, as the "
    "VCC job cuts its class images, and every segment at every layer is matched to its nearest concept among the "
    "concepts of C's and P's connectomes at that layer. Segments whose nearest concept belongs to "
    f"<span style='color:{vv.TRUE_COLOR}'>**C's VCC**</span> side with the true class, those nearest a concept of "
    f"<span style='color:{vv.PRED_COLOR}'>**P's VCC**</span> with the prediction.",
    unsafe_allow_html=True,
)

warnings: list[dict[str, Any]] = []  # the shown run's (set below): show() puts each beside its figure
root, records = ui_cache.current_runs()
debug_runs = [r for r in records if r["ok"] and r["kind"] == KIND]
vcc_runs = [r for r in records if r["ok"] and r["kind"] == VCC_KIND]
source = choice("Image", SOURCES, key="vccd_source", default=SOURCES[0] if debug_runs or not vcc_runs else SOURCES[1])


def read_file(rec: dict[str, Any], name: str) -> bytes:
    return ui_cache.read_run_bytes(rec["path"], name, rec["key"])


def image_array(rec: dict[str, Any], name: str) -> np.ndarray:
    """``(H, W, 3)`` uint8; an undecodable image is a RunError naming the run and file."""
    return ui_cache.load_run_image(rec["path"], name, rec["key"])


@st.cache_data(max_entries=32, show_spinner=False)
def run_thumbs(path: str, key: str, graph_file: str) -> dict[str, str]:
    graph = ui_cache.load_run_json(path, graph_file, key)
    return vv.thumbs_for(graph, lambda f: read_file({"path": path, "key": key}, f))


def exemplar_tiles(source: dict[str, Any]) -> Any:
    """Draws a node's exemplar files (small pictures the VCC job wrote) read from the run ``source``."""

    def draw(node: dict[str, Any]) -> None:
        files = (node.get("exemplar_files") or [])[:8]
        if not files:
            st.caption("No exemplar pictures for this concept.")
            return
        st.caption(("Its member nearest the centroid" if len(files) == 1 else
                    f"Its {len(files)} members nearest the centroid") + f" (of {md(node['size'])} segments).")
        tiles = []
        for f in files:
            try:
                tiles.append(Tile(read_file(source, f), name=f))
            except RunError as e:
                tiles.append(Tile(None, problem=str(e)))
        gallery(tiles, key=f"vccd_exemplars-{source['key']}-{node['id']}", columns=8)

    return draw


def show(record: dict[str, Any], arrays: dict[str, np.ndarray], image: np.ndarray,
         graphs: dict[str, tuple[dict[str, Any], dict[str, str], dict[str, Any]] | None], tag: str,
         by_prediction: Sequence[str] = ()) -> None:
    """Prediction, per-layer shares, top-down segments coloured by side, and the two VCCs one above the other
    (a click on a node opens it below its graph). ``graphs``: side -> (graph, thumbnails, the run holding its
    exemplar files) or None; ``by_prediction``: names of the classes whose VCC is built from crops the model
    predicts as them."""
    true_name = str(record["true_name"]).split(",")[0]
    pred_name = str(record["predicted_name"]).split(",")[0]
    wrong = record["correct"] is False
    has_pred = graphs.get("predicted") is not None
    left, mid, right = st.columns([1, 1.7, 1.3])
    with left:
        gallery([Tile(image, str(record.get("id", "upload")) + (f" · {record['source']}" if record.get("source")
                                                                 else ""))], key=f"vccd_photo-{tag}", columns=1)
    with mid:
        top = record["top"]  # class names from the run: topk_bar escapes them
        title = "Top-5 classes (true class in green)"
        if LIGHT:
            svg_chart(svg_figures.topk_bar(top, record["true_class"], title=title, width=400),
                      key=f"vccd_top5-{tag}-svg")
        else:
            st.plotly_chart(viz.topk_bar(top, record["true_class"], title=title),
                            config=viz.plotly_config(f"vccd-top5-{tag}"), key=f"vccd_top5-{tag}")
        export_buttons(functools.partial(viz.topk_bar, top, record["true_class"], title=title), f"vccd-top5-{tag}",
                       key=f"vccd_x_t-{tag}")
    with right:
        metric_row([Metric("true class", true_name),
                    Metric("predicted", pred_name, delta="wrong" if wrong else "right",
                           tone="bad" if wrong else "good"),
                    Metric("segments on the true side", f"{record['share_true']:.0%}",
                           help="Share of the image's segments, over every layer, whose nearest concept is in the "
                           "true class's VCC; per layer below")], columns=1)
    if wrong and not has_pred:
        st.warning(f"No VCC of the predicted class {md(pred_name)} ({md(record['predicted'])}) was found, so every "
                   f"segment is matched against {md(true_name)}'s concepts only. Build it with `python -m precompute "
                   f"vcc --target-class {md(record['predicted'])} ...`.")
    if not wrong:
        st.info("The model is right about this image: every segment is matched against the true class's VCC.")
    if by_prediction:
        st.caption(f"No labelled photo of {md(', '.join(by_prediction))} was available: its VCC is built from crops "
                   "of the shipped photos that the model predicts as that class (the model's own view of it), so it "
                   "shows what the model takes for that class, not what the class looks like in general.")

    st.subheader("Which class each layer sides with")
    if LIGHT:
        svg_chart(svg_figures.shares(record["layers"], true_name, pred_name if has_pred else None),
                  key=f"vccd_shares-{tag}-svg")
    else:
        st.plotly_chart(vv.shares_figure(record["layers"], true_name, pred_name if has_pred else None),
                        config=viz.plotly_config(f"vccd-shares-{tag}"), key=f"vccd_shares-{tag}")
    export_buttons(functools.partial(vv.shares_figure, record["layers"], true_name, pred_name if has_pred else None),
                   f"vccd-shares-{tag}", key=f"vccd_x_sh-{tag}")
    run_warnings.show(warnings, "shares", WARNING_PLACES)

    st.subheader("Top-down segments")
    st.caption(f"Per layer, the image's segments tinted by the VCC of their nearest concept: blue = {md(true_name)} "
               f"(true), orange = {md(pred_name)} (predicted). White lines separate segments; each layer splits the "
               "segments of the layer above.")
    layers = [r["layer"] for r in record["layers"]]
    order = list(range(len(layers)))[::-1]  # deepest first: the order the segmentation runs in
    tiles = []
    for li in order:
        ids = np.flatnonzero(arrays["layer"] == li)
        row = record["layers"][li]
        share = row.get("share_true")
        tiles.append(Tile(vv.side_overlay(image, arrays["masks"][ids], arrays["side"][ids]),
                          f"{layers[li]} · {row['n_segments']} segments · "
                          + (f"{share:.0%} side with {true_name}" if share is not None
                             else "no concept at this layer in the VCCs")))
    gallery(tiles, key=f"vccd_segments-{tag}", columns=min(4, len(order)))
    segments = st.expander("Segments table", key=f"vccd_seg_table-{tag}", on_change="rerun")
    if segments.open:  # its widgets and table only exist while it is open
        with segments:
            li = st.selectbox("Layer", range(len(layers)), format_func=layers.__getitem__, index=len(layers) - 1,
                              key=f"vccd_seg_layer-{tag}")
            tables.table(vv.segments_table(arrays, layers, li, [true_name, pred_name]), hide_index=True,
                         width="stretch", column_config={"area": st.column_config.NumberColumn(format="%.3f"),
                                                         "distance": st.column_config.NumberColumn(format="%.3f")})

    st.subheader("The two connectomes")
    st.caption("Concepts the image's segments are nearest to are ringed and labelled **×n** (n segments); the "
               "strongest paths from them to the class node (highest mean edge weight over significant edges) are "
               "drawn in colour; the rest is faded. **Click a concept** to open it below its graph; hover for "
               "its edges.")
    run_warnings.show(warnings, "graph", WARNING_PLACES, "graph")
    graph_tabs(record, graphs, true_name, pred_name, tag, wrong)


@st.fragment
def graph_tabs(record: dict[str, Any], graphs: dict[str, Any], true_name: str, pred_name: str, tag: str,
               wrong: bool) -> None:
    """The two VCCs at full width in tabs, only the open one drawn (a fragment: a tab switch or a click reruns
    only this part)."""
    sides = (("true", true_name, vv.TRUE_COLOR), ("predicted", pred_name, vv.PRED_COLOR))
    lazy_tabs({f"{'True' if side == 'true' else 'Predicted'} class: {md(name)}":
               functools.partial(connectome, record, graphs.get(side), side, name, color, tag, wrong)
               for side, name, color in sides}, key=f"vccd_graph_tab-{tag}")


def connectome(record: dict[str, Any], g: tuple[dict[str, Any], dict[str, str], dict[str, Any]] | None, side: str,
               name: str, color: str, tag: str, wrong: bool) -> None:
    """One class's VCC for the image, full width, and the concept clicked in it."""
    st.markdown(f"#### <span style='color:{color}'>{'True' if side == 'true' else 'Predicted'} class:</span> "
                f"{md(html.escape(name))}", unsafe_allow_html=True)
    if g is None:
        st.caption("No VCC." if wrong else "The model is right: same class.")
        return
    graph, thumbs, source = g
    paths = record["paths"].get(side) or []
    highlight = record["activated"].get(side) or {}
    node_key = f"vccd_node-{tag}-{side}"
    default = max(highlight, key=lambda k: (highlight[k], k)) if highlight else None
    vcc_graph.pick_node(graph, node_key, default, param=None)
    vcc_graph.clickable_graph(graph, thumbs, node_key=node_key, chart_key=f"vccd_graph-{tag}-{side}",
                              revision=f"{tag}-{side}", filename=f"vccd-{tag}-{side}", highlight=highlight,
                              path_edges=vv.path_edge_set(paths), accent=color)
    if paths:
        rows = [{"path": " → ".join(map(str, p["nodes"])), "strength": p["strength"], "segments": p["segments"]}
                for p in paths]
        tables.table(rows, hide_index=True, width="stretch",
                     column_config={"strength": st.column_config.NumberColumn(format="%.3f")})
    else:
        st.caption("No significant path from the activated concepts to the class node.")
    node_id = vcc_graph.node_select(graph, node_key)
    vcc_graph.node_panel(graph, node_id, exemplar_tiles(source), side)


# -- from a vcc-debug run ----------------------------------------------------------------------------------------
if source == SOURCES[0]:
    if not debug_runs:
        st.info(f"No `{KIND}` runs under {code(root)}. Make one with `python -m precompute vcc-debug --model ... "
                "--image ... --true-class ... --runs ...` (or without `--image`: every misclassified discovery image "
                "of the runs), or upload an image.")
        st.stop()
    run = ui_cache.picked_run(debug_runs)
    if run is None:
        labels = {r["path"]: ui_cache.run_label(r) for r in debug_runs}
        path = st.selectbox("Debug run", list(labels), format_func=labels.__getitem__, key="vccd_run")
        run = next(r for r in debug_runs if r["path"] == path)
    warnings = run.get("warnings") or []
    run_warnings.show(warnings, "top", WARNING_PLACES, "graph")
    try:
        debug = ui_cache.load_run_json(run["path"], vcc_store.DEBUG, run["key"])
    except RunError as e:
        st.error(md(e))
        st.stop()
    items = debug.get("images", [])
    if not items:
        st.warning("This run has no images.")
        st.stop()
    n_wrong = sum(r["correct"] is False for r in items)
    only = st.toggle("Only misclassified images", value=n_wrong > 0, disabled=n_wrong == 0, key="vccd_only")
    shown = [r for r in items if r["correct"] is False] if only and n_wrong else items
    labels = {r["n"]: f"{r['id']} · true {r['true_name'].split(',')[0]} → predicted "
                      f"{r['predicted_name'].split(',')[0]}" for r in shown}
    image_key = f"vccd_image-{run['run_id']}"
    ui_cache.url_state("image", list(labels), key=image_key)
    n = st.selectbox("Image", list(labels), format_func=labels.__getitem__, key=image_key)
    record = next(r for r in items if r["n"] == n)
    st.caption(f"{code(run['run_id'])} · model {code(run['model'])} · {len(items)} images, {n_wrong} misclassified")
    try:
        arrays = ui_cache.load_run_npz(run["path"], record["segments"], run["key"])
        image = image_array(run, record["file"])
        graphs: dict[str, Any] = {}
        for side, key in (("true", record["vcc_true"]), ("predicted", record["vcc_predicted"])):
            if key is None:
                graphs[side] = None
                continue
            gfile = debug["vccs"][key]["graph"]
            graphs[side] = (ui_cache.load_run_json(run["path"], gfile, run["key"]),
                            run_thumbs(run["path"], run["key"], gfile), {"path": run["path"], "key": run["key"]})
    except RunError as e:
        st.error(md(e))
        st.stop()
    picked = [debug["vccs"][k]["class_name"].split(",")[0] for k in (record["vcc_true"], record["vcc_predicted"])
              if k is not None and debug["vccs"][k].get("selected_by") == "prediction"]
    show(record, arrays, image, graphs, f"run-{n}", picked)
    st.stop()

# -- upload -------------------------------------------------------------------------------------------------------
st.caption("This runs the model of the chosen VCC run on this machine's CPU: the one place the dashboard computes. "
           "It takes seconds to a minute for a small model (EfficientNet-Lite0, one image).")
if not vcc_runs:
    st.info(f"No `{VCC_KIND}` runs under {code(root)} to match an uploaded image against; make them with "
            "`python -m precompute vcc`.")
    st.stop()
models = sorted({r["model"] for r in vcc_runs})
model = st.selectbox("Model (of the VCC runs)", models, key="vccd_model")
same = [r for r in vcc_runs if r["model"] == model]
classes: dict[int, str] = {}
for r in same:
    try:
        for ce in ui_cache.load_run_json(r["path"], vcc_store.CLASSES, r["key"]):
            classes.setdefault(int(ce["class_index"]), ce["class_name"])
    except RunError as e:
        st.warning(md(e))
if not classes:
    st.warning("These VCC runs hold no finished class.")
    st.stop()
upload = st.file_uploader("Image", type=["png", "jpg", "jpeg", "webp", "bmp"], key="vccd_file")
true_index = st.selectbox("Its true class (one with a VCC)", sorted(classes), key="vccd_true",
                          format_func=lambda i: f"{classes[i]} ({i})")


@st.cache_resource(max_entries=2, show_spinner="Loading the model on the CPU…")
def cpu_model(spec: str) -> Any:
    from core.models import resolve_model

    return resolve_model(spec, "cpu")


if upload is not None:
    data = upload.getvalue()
    sig = (hashlib.sha256(data).hexdigest(), int(true_index), tuple(sorted(r["key"] for r in same)))
    result = st.session_state.get(UPLOAD)
    if result is None or result["sig"] != sig:
        try:
            with Image.open(io.BytesIO(data)) as im:
                image = np.asarray(im.convert("RGB"))
        except Exception as e:  # a broken upload: say so in words and stop
            st.error(md(vv.upload_error(upload.name, e)))
            st.stop()
        from core.vcc.config import VCCDebugConfig
        from core.vcc.debug import analyse, load_vccs, pick_vccs
        from core.vcc.predict import predictions

        try:
            with st.spinner("Segmenting the image and matching its segments to the concepts…"):
                bundle = cpu_model(model)
                vccs = load_vccs([ui_cache.get_run(r["path"], r["key"]) for r in same])
                probs = predictions(bundle, [image], 16)[0]
                true, pred = pick_vccs(vccs, int(true_index), int(np.argmax(probs)), warn=False)
                analysis = analyse(bundle, image, true, pred, VCCDebugConfig(batch_size=16))
        except UserError as e:
            st.error(md(e))
            st.stop()
        rec_of = {(r["path"]): r for r in same}
        graphs = {}
        for side, v in (("true", true), ("predicted", pred)):
            if v is None:
                graphs[side] = None
                continue
            rec = rec_of[str(v.run.path)]
            graph_file = vcc_store.class_file(v.slug, vcc_store.GRAPH)
            graphs[side] = (v.graph_json, run_thumbs(rec["path"], rec["key"], graph_file),
                            {"path": rec["path"], "key": rec["key"]})
        result = {"sig": sig, "record": {"id": upload.name, **analysis.record}, "arrays": analysis.arrays,
                  "image": image, "graphs": graphs,
                  "by_prediction": [v.class_name.split(",")[0] for v in (true, pred)
                                    if v is not None and v.selected_by == "prediction"]}
        st.session_state[UPLOAD] = result
    show(result["record"], result["arrays"], result["image"], result["graphs"], "upload",
         result.get("by_prediction", ()))
