"""Predictions: a grid of a run's images with the model's top-1, and top-5 and feature norms for one.

URL: ``image`` (the inspected image's id) and ``page`` of the grid, plus the frame's ``root`` and ``run``.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import streamlit as st

from core import predictions_store as store
from core import svg_figures, ui_cache, viz
from core.errors import RunError
from core.viz import md_code, md_text
from pages.components import tables
from pages.components.choice import choice
from pages.components.figure_export import export_buttons
from pages.components.gallery import Tile, gallery
from pages.components.svg_chart import chart, light, svg_chart

KIND = store.KIND
PER_PAGE = 12  # two rows: what fits on a screen above the inspected image
COLUMNS = 6
MAX_PAGE_BUTTONS = 12  # up to this many pages of the grid, a button per page; more: a number input
SELECTED = "pred_image"

ui_cache.require_frame()
st.title("Predictions")


@st.cache_data(max_entries=256, show_spinner=False)
def topk_svg(top: tuple[str, ...], label: int | None) -> str:
    """The top-5 bars of an image (``top``: its records as JSON text, hashable)."""
    return svg_figures.topk_bar([json.loads(t) for t in top], label)


run = ui_cache.choose_run((KIND,), "predictions run", "Make one with `python -m precompute demo`, or point the "
                          "artifact root in the sidebar at a folder that has them.")

try:
    preds = ui_cache.load_run_json(run["path"], store.PREDICTIONS, run["key"])
    layers = ui_cache.load_run_json(run["path"], store.LAYERS, run["key"])
    features = ui_cache.load_run_npz(run["path"], store.FEATURES, run["key"])
except RunError as e:
    st.error(md_text(e))
    st.stop()

images: list[dict[str, Any]] = preds.get("images", [])
video = preds.get("model", {}).get("preprocessing", {}).get("input", "image") != "image"
unit = "clips" if video else "images"
hits, labelled = viz.accuracy(images)
st.caption(
    f"{md_code(run['run_id'])} · model {md_code(run['model'])} · {len(images)} {unit}"
    + (f" · top-1 accuracy {hits}/{labelled} ({hits / labelled:.0%}) on labelled {unit}" if labelled else "")
    + (" · each clip is shown by its middle frame" if unit == "clips" else "")
    + (" · click a tile to inspect it" if light() else "")
)


def tile(im: dict[str, Any]) -> Tile:
    """A grid tile of image record ``im``: its thumbnail and top-1; a click inspects it (outlined once it is)."""
    try:
        picture, problem = ui_cache.thumbnail(run["path"], im["file"], run["key"]), None
    except RunError as e:
        picture, problem = None, str(e)
    return Tile(picture, viz.tile_caption(im), im["id"], problem=problem,
                selected=st.session_state.get(SELECTED) == im["id"])


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
    if pages > 1:
        ui_cache.url_state("page", range(1, pages + 1), 1, key=f"pred_page-{only_wrong}")
        page = (choice("Page", range(1, pages + 1), key=f"pred_page-{only_wrong}") if pages <= MAX_PAGE_BUTTONS
                else st.number_input("Page", 1, pages, key=f"pred_page-{only_wrong}"))
    else:
        page = 1
    chunk = shown[(page - 1) * PER_PAGE: page * PER_PAGE]
    gallery([tile(im) for im in chunk], key="inspect", columns=COLUMNS, on_pick=select)

    st.divider()
    ids = [im["id"] for im in shown]
    ui_cache.url_state("image", ids, ids[0], key=SELECTED)
    by_id = {im["id"]: (i, im) for i, im in enumerate(images)}
    st.selectbox("Inspect image", ids, key=SELECTED,
                 format_func=lambda k: f"{k} · {viz.tile_caption(by_id[k][1])}")
    index, im = by_id[st.session_state[SELECTED]]
    left, right = st.columns([1, 3])
    with left:
        try:
            st.image(ui_cache.run_file(run["path"], im["file"], run["key"]), width="stretch")
        except RunError as e:
            st.warning(md_text(e))
        st.caption(f"source: {md_text(im.get('source'))}  \nlabel: {md_text(im.get('label_name') or 'unknown')}")
    with right:
        # Lazy tabs: the feature-norm chart (and plotly.js with it) loads only when its tab is opened.
        top_tab, norm_tab = st.tabs(["Top-5 classes", "Feature norm per layer"], key="pred_detail",
                                    on_change="rerun")
        if top_tab.open:
            with top_tab:
                if light():
                    svg_chart(topk_svg(tuple(json.dumps(t, sort_keys=True) for t in im.get("top", [])),
                                       im.get("label")), key=f"pred_top-{im['id']}")
                    export_buttons(partial(viz.topk_bar, im.get("top", []), im.get("label")),
                                   f"{run['run_id']}-top5-{im['id']}", key=f"pred_x_top-{im['id']}")
                else:
                    st.dataframe(viz.topk_table(im.get("top", []), im.get("label")), hide_index=True,
                                 width="stretch", column_config={"probability": st.column_config.ProgressColumn(
                                     format="percent", min_value=0.0, max_value=1.0, width="large")})
        if norm_tab.open:
            with norm_tab:
                norms = viz.layer_norms(features, [d["layer"] for d in layers])
                if norms:
                    chart(viz.feature_norms_bar(norms, index), key=f"pred_norms-{im['id']}", width=700,
                          config=viz.plotly_config(f"feature-norms-{im['id']}"))
                else:
                    st.caption(f"{store.FEATURES} has no per-layer features.")


browse()

st.subheader("Layers")
table = viz.layers_table(layers)
tables.table(table, hide_index=True, width="content")
buttons = st.container(horizontal=True)
buttons.download_button("Download layers (CSV)", table.to_csv(index=False),
                        file_name=f"{run['run_id']}-layers.csv", mime="text/csv", on_click="ignore")
buttons.download_button("Download predictions (CSV)", viz.predictions_table(images).to_csv(index=False),
                        file_name=f"{run['run_id']}-predictions.csv", mime="text/csv", on_click="ignore")
