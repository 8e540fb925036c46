"""Static / dynamic units: unit categories and layer scores per layer of video models (dissertation ch. 3)."""

from __future__ import annotations

from functools import partial
from typing import Any

import streamlit as st

from core import ui_cache
from core import viz_static_dynamic as vsd
from core.errors import RunError

KINDS = ("static-dynamic",)
EXPORT = "sd_export"

ui_cache.require_frame()
st.title("Static / dynamic units")

run = ui_cache.choose_run(KINDS, "static / dynamic run", "Make one with `python -m precompute static-dynamic`, or "
                          "point the artifact root in the sidebar at a folder that has them.")

try:
    models = ui_cache.load_run_json(run["path"], "models.json", run["key"])
    layers = ui_cache.load_run_json(run["path"], "layers.json", run["key"])
    units = ui_cache.load_run_npz(run["path"], "units.npz", run["key"])
    removal = ui_cache.load_optional_json(run["path"], "removal.json", run["key"])
    dynamics = ui_cache.load_optional_json(run["path"], "dynamics.json", run["key"])
    examples = ui_cache.load_optional_json(run["path"], "examples.json", run["key"])
except RunError as e:
    st.error(str(e))
    st.stop()

summary: dict[str, Any] = run.get("summary") or {}
labels = [m["label"] for m in models]
lam = float(summary.get("lambda", layers[0]["lambda"] if layers else 0.5))
pairs = summary.get("pairs")
st.caption(f"`{run['run_id']}` · {len(labels)} model{'s' if len(labels) != 1 else ''}: {', '.join(labels)}"
           + (f" · {pairs} pairs per factor" if pairs is not None else "") + f" · λ = {lam:g}")
st.markdown(
    f"Each unit (channel) of a layer gets two scores: its correlation across **static** pairs (the same frames "
    f"in another order: same appearance, other dynamics) and across **dynamic** pairs (the same video in two "
    f"styles: same motion, other appearance). With threshold λ = {lam:g}, a unit is **static** or **dynamic** when "
    f"only that score is above λ, **joint** when both are, **residual** when neither is, and **dead** when it "
    f"never varies (no score)."
)

fmt = (st.segmented_control("Figure export format", ["PNG", "SVG"], default="PNG", key=EXPORT,
                            help="Format of the camera button in each figure's toolbar") or "PNG").lower()


def config(name: str) -> dict[str, Any]:
    """Toolbar config for a figure of this run, saving ``fmt``."""
    return vsd.export_config(f"{run['run_id']}-{name}", fmt)


def csv_button(container: Any, label: str, table: Any, name: str) -> None:
    container.download_button(label, table.to_csv(index=False), file_name=f"{run['run_id']}-{name}.csv",
                              mime="text/csv", on_click="ignore")


st.dataframe(vsd.models_table(models, layers), hide_index=True, width="stretch",
             column_config={"final pct_static": st.column_config.NumberColumn("% static", format="%.1f",
                                                                              help="pct_static of the final layer"),
                            "final pct_dynamic": st.column_config.NumberColumn("% dynamic", format="%.1f",
                                                                               help="pct_dynamic of the final layer"),
                            "val_accuracy": st.column_config.NumberColumn("val acc.", format="%.3f")})

chosen = st.multiselect("Models", labels, default=labels, key="sd_models")
if not chosen:
    st.info("Pick at least one model to compare.")
else:
    tab_units, tab_scores = st.tabs(["Unit categories", "Layer scores"])
    with tab_units:
        share = st.toggle("Show shares of each layer's units (%)", key="sd_share")
        st.plotly_chart(vsd.unit_histogram(layers, chosen, share=share),
                        config=config("unit-categories"), key="sd_unit_hist")
    with tab_scores:
        metric = st.radio("Value", ["pct", "S"], horizontal=True, key="sd_metric",
                          format_func={"pct": "percentage (softmax)", "S": "raw score S"}.__getitem__)
        st.plotly_chart(vsd.layer_scores(layers, chosen, metric=metric), config=config(f"layer-scores-{metric}"),
                        key="sd_layer_scores")
        st.caption("Percentages are `100 · softmax([S_dynamic, S_static, 1])`: the constant identical term "
                   "squeezes them, so a factor's share stays under 47% even at perfect correlation. The raw S "
                   "(a variance-weighted correlation: near [-1, 1], above 1 when one factor's features vary "
                   "more than all features together) and the identical share are in the hover; switch to "
                   "*raw score S* to plot them.")

layer_table = vsd.layers_table(layers)
with st.expander("Layer table"):
    st.dataframe(layer_table, hide_index=True, width="stretch")
    csv_button(st, "Download layers (CSV)", layer_table, "layers")


st.subheader("Units of one layer")


def unit_key(row: int) -> str:
    return f"sd_unit-{row}"


def pick_point(chart_key: str, row: int) -> None:
    """Chart selection callback: the clicked point's unit becomes the selected unit."""
    points = st.session_state[chart_key].selection.get("points", [])
    for p in points:
        unit = vsd.point_unit(p)
        if unit is not None:
            st.session_state[unit_key(row)] = unit
            return


@st.fragment
def one_layer() -> None:
    """Scatter and histograms of one layer's unit scores, and the selected unit."""
    left, right = st.columns(2)
    model = left.selectbox("Model", labels, key="sd_layer_model")
    recs = vsd.by_model(layers, [model])[model]
    if not recs:
        st.info(f"`{model}` has no layers in this run.")
        return
    names = [r["layer"] for r in recs]
    name = right.selectbox("Layer", names, index=len(names) - 1, key=f"sd_layer-{model}",
                           format_func=lambda n: f"{names.index(n)} · {n}")
    rec = recs[names.index(name)]
    row = layers.index(rec)
    try:
        s_static, s_dynamic = units[f"s_static_{row}"], units[f"s_dynamic_{row}"]
    except KeyError as e:
        st.error(f"run {run['path']}: units.npz has no {e.args[0]} for {model} · {name}")
        return
    table = vsd.unit_table(s_static, s_dynamic, lam)
    scored = table.index[table["category"] != "dead"]
    key = unit_key(row)
    if key not in st.session_state:
        st.session_state[key] = int(scored[0]) if len(scored) else 0
    n_dead = int((table["category"] == "dead").sum())
    st.caption(f"{len(table)} units · " + " · ".join(f"{c} {int((table['category'] == c).sum())}"
                                                     for c in vsd.CATEGORIES)
               + f" · S_static {rec['S_static']:.3f}, S_dynamic {rec['S_dynamic']:.3f}"
               + (f" · the {n_dead} dead units (zero variance, no score) are not plotted" if n_dead else ""))
    unit = int(st.session_state[key])

    plot, hist = st.columns([3, 2])
    with plot:
        fig = vsd.unit_scatter(s_static, s_dynamic, lam, selected=unit)
        chart_key = f"sd_scatter-{row}"
        many = len(scored) > vsd.MAX_SCATTER
        st.plotly_chart(fig, config=config(f"units-{model}-{name}"), key=chart_key,
                        on_select="ignore" if many else partial(pick_point, chart_key, row), selection_mode="points")
        if many:
            st.caption(f"{len(scored)} scored units: shown as a 2-D histogram; pick a unit by its index below.")
    with hist:
        st.plotly_chart(vsd.score_histograms(s_static, s_dynamic, lam), config=config(f"scores-{model}-{name}"),
                        key=f"sd_hist-{row}")

    pick, a, b, c = st.columns([2, 1, 1, 1])
    pick.number_input("Unit", 0, len(table) - 1, key=key, help="Or click a point in the scatter")
    sel = table.iloc[int(st.session_state[key])]
    a.metric("s_static", "—" if sel["category"] == "dead" else f"{sel['s_static']:.3f}")
    b.metric("s_dynamic", "—" if sel["category"] == "dead" else f"{sel['s_dynamic']:.3f}")
    c.metric("category", str(sel["category"]))
    with st.expander(f"Unit scores of {model} · {name}"):
        st.dataframe(table, hide_index=True, width="stretch")
        csv_button(st, "Download unit scores (CSV)", table, f"units-{model}-{name}")


one_layer()


st.subheader("Unit removal")
if removal is None or not removal.get("curves"):
    st.caption("This run has no removal curves; run the precompute job with `--removal` to measure how the "
               "task metric falls when the top static, top dynamic or random units are zeroed.")
else:
    curves = removal["curves"]
    choices = [f"{c['model']} · {c['layer']}" for c in curves]
    pick = st.selectbox("Removal curve", range(len(curves)), format_func=choices.__getitem__, key="sd_removal")
    curve = curves[pick]
    n_videos = removal.get("n_videos")
    st.caption(f"{removal.get('metric', 'metric')}" + (f" on {n_videos} videos" if n_videos else "")
               + " after zeroing the top-k% units by s_static or s_dynamic, against random units. "
               "Lower area under the curve (AUC) = more important units.")
    st.plotly_chart(vsd.removal_figure(removal, curve), config=config(f"removal-{curve['model']}-{curve['layer']}"),
                    key="sd_removal_chart")
    aucs = vsd.removal_table(removal)
    st.dataframe(aucs, hide_index=True, width="content",
                 column_config={k: st.column_config.NumberColumn(format="%.3f") for k in vsd.AUC_COLUMNS[2:]})
    buttons = st.container(horizontal=True)
    csv_button(buttons, "Download AUCs (CSV)", aucs, "removal-auc")
    csv_button(buttons, "Download removal curves (CSV)", vsd.removal_curves_table(removal), "removal-curves")


st.subheader("Training dynamics")
if dynamics is None or not dynamics.get("records"):
    st.caption("This run has no training dynamics; run the precompute job with `--checkpoints` on a model's "
               "per-epoch checkpoints to see the layer scores develop during training.")
else:
    d_layers = vsd.dynamics_layers(dynamics)
    checkpoints = dynamics.get("checkpoints", [])
    st.caption(f"{len(checkpoints)} checkpoints of one training run"
               + (f" ({checkpoints[0]['label']} … {checkpoints[-1]['label']})" if checkpoints else "")
               + "; a line per layer, shallow light to deep dark; dotted: validation accuracy.")
    left, right = st.columns([1, 2])
    d_metric = left.radio("Value", ["pct", "S", "units"], horizontal=True, key="sd_dyn_metric",
                          format_func={"pct": "percentage", "S": "raw S", "units": "unit share"}.__getitem__)
    shown = right.multiselect("Layers", d_layers, default=d_layers, key="sd_dyn_layers")
    st.plotly_chart(vsd.dynamics_figure(dynamics, shown, metric=d_metric), config=config(f"dynamics-{d_metric}"),
                    key="sd_dynamics")
    d_table = vsd.dynamics_table(dynamics)
    with st.expander("Dynamics table"):
        st.dataframe(d_table, hide_index=True, width="stretch")
        csv_button(st, "Download dynamics (CSV)", d_table, "dynamics")


if examples:
    st.subheader("Example pairs")
    st.caption("What the model is shown: a **static pair** keeps the appearance and breaks the dynamics (the "
               "frames shuffled; for two-stream models the flow recoloured); a **dynamic pair** keeps the motion "
               "and restyles every frame (two styles).")
    for n, ex in enumerate(examples):
        views = vsd.example_views(ex.get("files", {}), ex.get("styles"))
        st.markdown(f"**{ex.get('caption') or ex.get('video') or f'example {n}'}**")
        per_row = min(max(len(views), 1), 6)
        for start in range(0, len(views), per_row):
            cols = st.columns(per_row, vertical_alignment="bottom")
            for col, (_, title, file) in zip(cols, views[start:start + per_row], strict=False):
                with col:
                    st.caption(title)
                    try:
                        st.video(ui_cache.run_file(run["path"], file, run["key"]), loop=True, muted=True)
                    except RunError as e:
                        st.warning(str(e))
