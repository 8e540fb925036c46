"""Failure debugger: why a model got an image wrong, through the VCCs of its true and predicted classes
(dissertation 5.5)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

from core import ui_cache, viz
from core import viz_vcc as vv
from core.errors import RunError, UserError

KIND = "vcc-debug"
VCC_KIND = "vcc"
GRAPH_HEIGHT = 500
SOURCES = ("From a vcc-debug run", "Upload an image")
UPLOAD = "vccd_upload_result"

ui_cache.require_frame()
st.title("Failure debugger")
st.markdown(
    "An image of true class **C** that the model calls **P**: the image is cut into segments top-down, as the "
    "VCC job cuts its class images, and every segment at every layer is matched to its nearest concept among the "
    "concepts of C's and P's connectomes at that layer. Segments whose nearest concept belongs to "
    f"<span style='color:{vv.TRUE_COLOR}'>**C's VCC**</span> side with the true class, those nearest a concept of "
    f"<span style='color:{vv.PRED_COLOR}'>**P's VCC**</span> with the prediction.",
    unsafe_allow_html=True,
)

root, records = ui_cache.current_runs()
debug_runs = [r for r in records if r["ok"] and r["kind"] == KIND]
vcc_runs = [r for r in records if r["ok"] and r["kind"] == VCC_KIND]
source = st.radio("Image", SOURCES, horizontal=True, key="vccd_source",
                  index=0 if debug_runs or not vcc_runs else 1)


def read_file(rec: dict[str, Any], name: str) -> bytes:
    with open(ui_cache.run_file(rec["path"], name, rec["key"]), "rb") as f:
        return f.read()


def image_array(rec: dict[str, Any], name: str) -> np.ndarray:
    with Image.open(io.BytesIO(read_file(rec, name))) as im:
        return np.asarray(im.convert("RGB"))


@st.cache_data(max_entries=32, show_spinner=False)
def run_thumbs(path: str, key: str, graph_file: str) -> dict[str, str]:
    graph = ui_cache.load_run_json(path, graph_file, key)
    return vv.thumbs_for(graph, lambda f: read_file({"path": path, "key": key}, f))


def show(record: dict[str, Any], arrays: dict[str, np.ndarray], image: np.ndarray,
         graphs: dict[str, tuple[dict[str, Any], dict[str, str]] | None], tag: str,
         by_prediction: Sequence[str] = ()) -> None:
    """Prediction, per-layer shares, top-down segments coloured by side, and the two VCCs side by side.
    ``by_prediction``: names of the classes whose VCC is built from crops the model predicts as them."""
    true_name = record["true_name"].split(",")[0]
    pred_name = record["predicted_name"].split(",")[0]
    wrong = record["correct"] is False
    has_pred = graphs.get("predicted") is not None
    left, mid, right = st.columns([1, 1.7, 1.3])
    with left:
        st.image(image, width="stretch")
        st.caption(f"`{record.get('id', 'upload')}`" + (f" · {record['source']}" if record.get("source") else ""))
    with mid:
        st.plotly_chart(viz.topk_bar(record["top"], record["true_class"], title="Top-5 classes (true class in green)"),
                        config=viz.plotly_config(f"vccd-top5-{tag}"), key=f"vccd_top5-{tag}")
    with right:
        st.metric("true class", true_name)
        st.metric("predicted", pred_name, delta="wrong" if wrong else "right",
                  delta_color="inverse" if wrong else "normal")
        st.metric("segments on the true side", f"{record['share_true']:.0%}",
                  help="Share of the image's segments, over every layer, whose nearest concept is in the true "
                  "class's VCC; per layer below")
    if wrong and not has_pred:
        st.warning(f"No VCC of the predicted class {pred_name} ({record['predicted']}) was found, so every segment is "
                   f"matched against {true_name}'s concepts only. Build it with `python -m precompute vcc "
                   f"--target-class {record['predicted']} ...`.")
    if not wrong:
        st.info("The model is right about this image: every segment is matched against the true class's VCC.")
    if by_prediction:
        st.caption(f"No labelled photo of {', '.join(by_prediction)} was available: its VCC is built from crops of the "
                   "shipped photos that the model predicts as that class (the model's own view of it), so it shows "
                   "what the model takes for that class, not what the class looks like in general.")

    st.subheader("Which class each layer sides with")
    st.plotly_chart(vv.shares_figure(record["layers"], true_name, pred_name if has_pred else None),
                    config=viz.plotly_config(f"vccd-shares-{tag}"), key=f"vccd_shares-{tag}")

    st.subheader("Top-down segments")
    st.caption(f"Per layer, the image's segments tinted by the VCC of their nearest concept: blue = {true_name} "
               f"(true), orange = {pred_name} (predicted). White lines separate segments; each layer splits the "
               "segments of the layer above.")
    layers = [r["layer"] for r in record["layers"]]
    order = list(range(len(layers)))[::-1]  # deepest first: the order the segmentation runs in
    per_row = min(4, len(order))
    for start in range(0, len(order), per_row):
        for col, li in zip(st.columns(per_row), order[start:start + per_row], strict=False):
            ids = np.flatnonzero(arrays["layer"] == li)
            row = record["layers"][li]
            col.image(vv.side_overlay(image, arrays["masks"][ids], arrays["side"][ids]), width="stretch")
            share = row.get("share_true")
            col.caption(f"**{layers[li]}** · {row['n_segments']} segments · "
                        + (f"{share:.0%} side with {true_name}" if share is not None
                           else "no concept at this layer in the VCCs"))
    with st.expander("Segments table"):
        li = st.selectbox("Layer", range(len(layers)), format_func=layers.__getitem__, index=len(layers) - 1,
                          key=f"vccd_seg_layer-{tag}")
        st.dataframe(vv.segments_table(arrays, layers, li, [true_name, pred_name]), hide_index=True, width="stretch",
                     column_config={"area": st.column_config.NumberColumn(format="%.3f"),
                                    "distance": st.column_config.NumberColumn(format="%.3f")})

    st.subheader("The two connectomes")
    st.caption("Concepts the image's segments are nearest to are ringed and labelled `×n` (n segments); the "
               "strongest paths from them to the class node (highest mean edge weight over significant edges) are "
               "drawn in colour; the rest is faded. Hover or click a node for its details.")
    cols = st.columns(2)
    for col, side, name, color in ((cols[0], "true", true_name, vv.TRUE_COLOR),
                                   (cols[1], "predicted", pred_name, vv.PRED_COLOR)):
        with col:
            st.markdown(f"**{'True' if side == 'true' else 'Predicted'} class: {name}**")
            g = graphs.get(side)
            if g is None:
                st.caption("No VCC." if wrong else "The model is right: same class.")
                continue
            graph, thumbs = g
            paths = record["paths"].get(side) or []
            st.iframe(vv.graph_html(graph, thumbs, highlight=record["activated"].get(side) or {},
                                    path_edges=vv.path_edge_set(paths), accent=color, height=GRAPH_HEIGHT),
                      height=GRAPH_HEIGHT + 100)
            if paths:
                st.dataframe([{"path": " → ".join(p["nodes"]), "strength": p["strength"], "segments": p["segments"]}
                              for p in paths], hide_index=True, width="stretch",
                             column_config={"strength": st.column_config.NumberColumn(format="%.3f")})
            else:
                st.caption("No significant path from the activated concepts to the class node.")


# -- from a vcc-debug run ----------------------------------------------------------------------------------------
if source == SOURCES[0]:
    if not debug_runs:
        st.info(f"No `{KIND}` runs under `{root}`. Make one with `python -m precompute vcc-debug --model ... "
                "--image ... --true-class ... --runs ...` (or without `--image`: every misclassified discovery image "
                "of the runs), or upload an image.")
        st.stop()
    run = ui_cache.picked_run(debug_runs)
    if run is None:
        labels = {r["path"]: ui_cache.run_label(r) for r in debug_runs}
        path = st.selectbox("Debug run", list(labels), format_func=labels.__getitem__, key="vccd_run")
        run = next(r for r in debug_runs if r["path"] == path)
    try:
        debug = ui_cache.load_run_json(run["path"], "debug.json", run["key"])
    except RunError as e:
        st.error(str(e))
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
    n = st.selectbox("Image", list(labels), format_func=labels.__getitem__, key=f"vccd_image-{run['run_id']}")
    record = next(r for r in items if r["n"] == n)
    st.caption(f"`{run['run_id']}` · model `{run['model']}` · {len(items)} images, {n_wrong} misclassified")
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
                            run_thumbs(run["path"], run["key"], gfile))
    except RunError as e:
        st.error(str(e))
        st.stop()
    picked = [debug["vccs"][k]["class_name"].split(",")[0] for k in (record["vcc_true"], record["vcc_predicted"])
              if k is not None and debug["vccs"][k].get("selected_by") == "prediction"]
    show(record, arrays, image, graphs, f"run-{n}", picked)
    st.stop()

# -- upload -------------------------------------------------------------------------------------------------------
st.caption("This runs the model of the chosen VCC run on this machine's CPU: the one place the dashboard computes. "
           "It takes seconds to a minute for a small model (EfficientNet-Lite0, one image).")
if not vcc_runs:
    st.info(f"No `{VCC_KIND}` runs under `{root}` to match an uploaded image against; make them with "
            "`python -m precompute vcc`.")
    st.stop()
models = sorted({r["model"] for r in vcc_runs})
model = st.selectbox("Model (of the VCC runs)", models, key="vccd_model")
same = [r for r in vcc_runs if r["model"] == model]
classes: dict[int, str] = {}
for r in same:
    try:
        for ce in ui_cache.load_run_json(r["path"], "classes.json", r["key"]):
            classes.setdefault(int(ce["class_index"]), ce["class_name"])
    except RunError as e:
        st.warning(str(e))
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
        except Exception as e:  # a broken upload: say so and stop
            st.error(f"cannot read {upload.name}: {e}")
            st.stop()
        from core.vcc.debug import analyse, load_vccs, pick_vccs
        from core.vcc.predict import predictions

        try:
            with st.spinner("Segmenting the image and matching its segments to the concepts…"):
                bundle = cpu_model(model)
                vccs = load_vccs([ui_cache.get_run(r["path"], r["key"]) for r in same])
                probs = predictions(bundle, [image], 16)[0]
                true, pred = pick_vccs(vccs, int(true_index), int(np.argmax(probs)), warn=False)
                analysis = analyse(bundle, image, true, pred, batch_size=16)
        except UserError as e:
            st.error(str(e))
            st.stop()
        rec_of = {(r["path"]): r for r in same}
        graphs = {}
        for side, v in (("true", true), ("predicted", pred)):
            if v is None:
                graphs[side] = None
                continue
            rec = rec_of[str(v.run.path)]
            graphs[side] = (v.graph_json, run_thumbs(rec["path"], rec["key"], f"classes/{v.slug}/graph.json"))
        result = {"sig": sig, "record": {"id": upload.name, **analysis.record}, "arrays": analysis.arrays,
                  "image": image, "graphs": graphs,
                  "by_prediction": [v.class_name.split(",")[0] for v in (true, pred)
                                    if v is not None and v.selected_by == "prediction"]}
        st.session_state[UPLOAD] = result
    show(result["record"], result["arrays"], result["image"], result["graphs"], "upload",
         result.get("by_prediction", ()))
