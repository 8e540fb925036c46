"""Predictions: a grid of a run's images with the model's top-1, and top-5 and feature norms for one."""

from __future__ import annotations

from typing import Any

import streamlit as st

from core import ui_cache, viz
from core.errors import RunError

KIND = "predictions"
PER_PAGE = 24
COLUMNS = 6
SELECTED = "pred_image"

ui_cache.require_frame()
st.title("Predictions")

run = ui_cache.choose_run((KIND,), "predictions run", "Make one with `python -m precompute demo`, or point the "
                          "artifact root in the sidebar at a folder that has them.")

try:
    preds = ui_cache.load_run_json(run["path"], "predictions.json", run["key"])
    layers = ui_cache.load_run_json(run["path"], "layers.json", run["key"])
    features = ui_cache.load_run_npz(run["path"], "features.npz", run["key"])
except RunError as e:
    st.error(str(e))
    st.stop()

images: list[dict[str, Any]] = preds.get("images", [])
video = preds.get("model", {}).get("preprocessing", {}).get("input", "image") != "image"
unit = "clips" if video else "images"
hits, labelled = viz.accuracy(images)
st.caption(
    f"`{run['run_id']}` · model `{run['model']}` · {len(images)} {unit}"
    + (f" · top-1 accuracy {hits}/{labelled} ({hits / labelled:.0%}) on labelled {unit}" if labelled else "")
    + (" · each clip is shown by its middle frame" if unit == "clips" else "")
)


def select(image_id: str) -> None:
    st.session_state[SELECTED] = image_id


@st.fragment
def browse() -> None:
    """Image grid with the misclassified filter, and the detail view of the selected image."""
    only_wrong = st.toggle("Only misclassified", disabled=not labelled,
                           help="Images whose label is known and whose top-1 prediction is wrong")
    shown = viz.misclassified(images) if only_wrong else images
    if not shown:
        st.info("No misclassified images in this run." if only_wrong else "This run has no images.")
        return
    pages = (len(shown) - 1) // PER_PAGE + 1
    page = st.number_input("Page", 1, pages, 1) if pages > 1 else 1
    chunk = shown[(page - 1) * PER_PAGE: page * PER_PAGE]
    for start in range(0, len(chunk), COLUMNS):
        for col, im in zip(st.columns(COLUMNS), chunk[start: start + COLUMNS], strict=False):
            with col:
                try:
                    st.image(viz.thumbnail(ui_cache.run_file(run["path"], im["file"], run["key"])),
                             width="stretch")
                except RunError as e:
                    st.warning(str(e))
                st.caption(viz.tile_caption(im))
                st.button("Inspect", key=f"inspect-{im['id']}", on_click=select, args=(im["id"],),
                          type="tertiary", icon=":material/search:")

    st.divider()
    ids = [im["id"] for im in shown]
    if st.session_state.get(SELECTED) not in ids:
        st.session_state[SELECTED] = ids[0]
    by_id = {im["id"]: (i, im) for i, im in enumerate(images)}
    st.selectbox("Inspect image", ids, key=SELECTED,
                 format_func=lambda k: f"{k} · {viz.tile_caption(by_id[k][1])}")
    index, im = by_id[st.session_state[SELECTED]]
    left, mid, right = st.columns([1, 2, 2])
    with left:
        try:
            st.image(ui_cache.run_file(run["path"], im["file"], run["key"]), width="stretch")
        except RunError as e:
            st.warning(str(e))
        st.caption(f"source: {im.get('source')}  \nlabel: {im.get('label_name') or 'unknown'}")
    with mid:
        st.plotly_chart(viz.topk_bar(im.get("top", []), im.get("label"), title="Top-5 classes"),
                        config=viz.plotly_config(f"top5-{im['id']}"))
    with right:
        norms = viz.layer_norms(features, [d["layer"] for d in layers])
        if norms:
            st.plotly_chart(viz.feature_norms_bar(norms, index, title="Feature norm per layer"),
                            config=viz.plotly_config(f"feature-norms-{im['id']}"))
        else:
            st.caption("features.npz has no per-layer features.")


browse()

st.subheader("Layers")
table = viz.layers_table(layers)
st.dataframe(table, hide_index=True, width="content")
buttons = st.container(horizontal=True)
buttons.download_button("Download layers (CSV)", table.to_csv(index=False),
                        file_name=f"{run['run_id']}-layers.csv", mime="text/csv", on_click="ignore")
buttons.download_button("Download predictions (CSV)", viz.predictions_table(images).to_csv(index=False),
                        file_name=f"{run['run_id']}-predictions.csv", mime="text/csv", on_click="ignore")
