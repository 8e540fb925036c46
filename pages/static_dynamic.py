"""Static / dynamic units: unit categories and layer scores per layer of video models (dissertation ch. 3).

Only what is on screen is drawn: one overview figure at a time, one layer's units, one example; every
section is a fragment (a widget reruns only its section) and the figures are cached per run.
URL: ``models`` of the overview (comma-separated), ``model``, ``layer`` and ``unit`` of the one-layer view
(plus the frame's ``root`` and ``run``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from core import svg_figures, ui_cache
from core import viz_static_dynamic as vsd
from core.errors import RunError
from core.static_dynamic import store
from core.static_dynamic.config import StaticDynamicConfig
from core.viz import md_code, md_text
from pages.components import tables
from pages.components.choice import choice
from pages.components.figure_export import export_buttons
from pages.components.metrics import Metric, metric_row
from pages.components.svg_chart import chart, light, svg_chart

KINDS = (store.KIND,)
EXPORT = "sd_export"
VIEWS = {"units": "Unit categories", "scores": "Layer scores"}
MORE = ["Unit removal", "Training dynamics", "Example pairs"]

ui_cache.require_frame()
st.title("Static / dynamic units")

run = ui_cache.choose_run(KINDS, "static / dynamic run", "Make one with `python -m precompute static-dynamic`, or "
                          "point the artifact root in the sidebar at a folder that has them.")
PATH, KEY = run["path"], run["key"]

try:
    models = ui_cache.load_run_json(PATH, store.MODELS, KEY)
    layers = ui_cache.load_run_json(PATH, store.LAYERS, KEY)
    units = ui_cache.load_run_npz(PATH, store.UNITS, KEY)
    removal = ui_cache.load_optional_json(PATH, store.REMOVAL, KEY)
    dynamics = ui_cache.load_optional_json(PATH, store.DYNAMICS, KEY)
    examples = ui_cache.load_optional_json(PATH, store.EXAMPLES, KEY)
except RunError as e:
    st.error(md_text(e))
    st.stop()


def layer_records(path: str, key: str, compare: tuple[tuple[str, str, str], ...] = ()) -> list[dict[str, Any]]:
    """The layer records of a run, then those of the compared runs (``(path, key, run_id)``) with their models
    named ``<run_id> · <model>``."""
    recs = list(ui_cache.load_run_json(path, store.LAYERS, key))
    for other_path, other_key, run_id in compare:
        recs += [{**r, "model": f"{run_id} · {r['model']}"}
                 for r in ui_cache.load_run_json(other_path, store.LAYERS, other_key)]
    return recs


@st.cache_resource(max_entries=32, show_spinner=False)
def overview_figure(path: str, key: str, view: str, chosen: tuple[str, ...], share: bool, metric: str,
                    light: bool = False, compare: tuple[tuple[str, str, str], ...] = ()) -> go.Figure | str:
    """The overview figure of a run and the runs compared with it (built once per choice; never mutated by
    the page); ``light``: the unit categories as SVG."""
    recs = layer_records(path, key, compare)
    if view == "units" and light:
        return svg_figures.unit_histogram(recs, list(chosen), share=share)
    if view == "units":
        return vsd.unit_histogram(recs, list(chosen), share=share)
    return vsd.layer_scores(recs, list(chosen), metric=metric)


@st.cache_resource(max_entries=64, show_spinner=False)
def histogram_figure(path: str, key: str, row: int, lam: float, light: bool = False) -> go.Figure | str:
    """Score histograms of layer ``row`` of a run (``light``: SVG)."""
    arrays = ui_cache.load_run_npz(path, store.UNITS, key)
    draw = svg_figures.score_histograms if light else vsd.score_histograms
    return draw(arrays[store.units_key("static", row)], arrays[store.units_key("dynamic", row)], lam)


@st.cache_resource(max_entries=64, show_spinner=False)
def scatter_figure(path: str, key: str, row: int, lam: float, selected: int, light: bool = False
                   ) -> go.Figure | str:
    """Unit scatter of layer ``row`` of a run with unit ``selected`` ringed (``light``: SVG)."""
    arrays = ui_cache.load_run_npz(path, store.UNITS, key)
    draw = svg_figures.unit_scatter if light else vsd.unit_scatter
    return draw(arrays[store.units_key("static", row)], arrays[store.units_key("dynamic", row)], lam,
                selected=selected)


@st.cache_resource(max_entries=32, show_spinner=False)
def removal_chart(path: str, key: str, index: int) -> go.Figure:
    """Removal curve ``index`` of a run's removal curves."""
    data = ui_cache.load_run_json(path, store.REMOVAL, key)
    return vsd.removal_figure(data, data["curves"][index])


def threshold(summary: Mapping[str, Any], layers: Sequence[Mapping[str, Any]]) -> float:
    """The run's λ: its summary's, else its first layer record's, else the config default (an older or
    foreign run may have neither; a value that is not a finite number is passed over)."""
    for value in (summary.get("lambda"), *(r.get("lambda") for r in layers[:1])):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return StaticDynamicConfig().lam


def warn(items: Sequence[Mapping[str, Any]]) -> None:
    """Each of the run's warnings as an ``st.warning``, its text shown as text."""
    for w in items:
        setting = w.get("setting")
        st.warning(md_text(w.get("message") or w.get("code") or "warning")
                   + (f" (setting: {md_code(setting)})" if setting else ""), icon="⚠️")


LIGHT = light()
summary: dict[str, Any] = run.get("summary") or {}
labels = [str(m["label"]) for m in models]
lam = threshold(summary, layers)
pairs = summary.get("pairs")
warnings = [w for w in run.get("warnings") or [] if isinstance(w, Mapping)]
layer_warnings = [w for w in warnings if w.get("layer")]
st.caption(f"{md_code(run['run_id'])} · {len(labels)} model{'s' if len(labels) != 1 else ''}: "
           f"{', '.join(md_text(lab) for lab in labels)}"
           + (f" · {md_text(pairs)} pairs per factor" if pairs is not None else "") + f" · λ = {lam:g}")
warn([w for w in warnings if not w.get("layer")])
if layer_warnings:
    names = sorted({str(w["layer"]) for w in layer_warnings})
    st.caption(f"{len(layer_warnings)} warning{'s' if len(layer_warnings) != 1 else ''} about layers "
               + ", ".join(md_code(n) for n in names) + ": shown beside those layers' units below.")
st.markdown(
    f"Each unit (channel) of a layer gets two scores: its correlation across **static** pairs (the same frames "
    f"in another order: same appearance, other dynamics) and across **dynamic** pairs (the same video in two "
    f"styles: same motion, other appearance). With threshold λ = {lam:g}, a unit is **static** or **dynamic** when "
    f"only that score is above λ, **joint** when both are, **residual** when neither is, and **dead** when it "
    f"never varies (no score)."
)

fmt = "png" if LIGHT else (st.segmented_control(
    "Figure export format", ["PNG", "SVG"], default="PNG", key=EXPORT,
    help="Format of the camera button in each figure's toolbar") or "PNG").lower()


def config(name: str) -> dict[str, Any]:
    """Toolbar config for a figure of this run, saving ``fmt``."""
    return vsd.export_config(f"{run['run_id']}-{name}", fmt)


def csv_button(container: Any, label: str, table: Any, name: str) -> None:
    container.download_button(label, table.to_csv(index=False), file_name=f"{run['run_id']}-{name}.csv",
                              mime="text/csv", on_click="ignore")


models_table = vsd.models_table(models, layers)
same_spec = bool((models_table["spec"].astype(str) == models_table["model"].astype(str)).all())
tables.table(models_table, hide_index=True, width="stretch",
             column_order=[c for c in models_table.columns if not (c == "spec" and same_spec)],
             column_config={"final pct_static": st.column_config.NumberColumn("% static", format="%.1f",
                                                                              help="pct_static of the final layer"),
                            "final pct_dynamic": st.column_config.NumberColumn("% dynamic", format="%.1f",
                                                                               help="pct_dynamic of the final layer"),
                            "val_accuracy": st.column_config.NumberColumn("val acc.", format="%.3f")})


COMPARE = tuple((r["path"], r["key"], str(r["run_id"])) for r in ui_cache.compared_runs(store.KIND))


def overview_models() -> tuple[list[str], list[str]]:
    """(every model of the overview, the ones shown at first): this run's, then each compared run's as
    ``<run_id> · <model>``; with runs to compare, the first model of this run beside the same model of each
    compared run (or its first)."""
    options = list(dict.fromkeys([*labels, *(r["model"] for r in layer_records(PATH, KEY, COMPARE)[len(layers):])]))
    if not COMPARE:
        return options, labels[:vsd.FACET_COLUMNS]
    first = labels[:1]
    for _, _, run_id in COMPARE:
        theirs = [m for m in options if m.startswith(f"{run_id} · ")]
        same = f"{run_id} · {first[0]}" if first else None
        first += [same] if same in theirs else theirs[:1]
    return options, first


@st.fragment
def overview() -> None:
    """One figure at a time over the chosen models: unit categories or layer scores per layer."""
    models_key = f"sd_models-{run['run_id']}" + ("-vs-" + "-".join(c[2] for c in COMPARE) if COMPARE else "")
    options, default = overview_models()
    if COMPARE:  # a comparison is not in the URL: its own selection, starting on the models side by side
        if not set(st.session_state.get(models_key) or []) <= set(options):
            st.session_state.pop(models_key, None)
        st.session_state.setdefault(models_key, default)
    else:
        ui_cache.url_list_state("models", options, default, key=models_key)
    chosen = st.multiselect("Models", options, key=models_key, help="A panel per model; the first three are "
                            "shown at first" + ("; the compared runs' models are named `run · model`"
                                                if COMPARE else ""))
    if not chosen:
        st.info("Pick at least one model to compare.")
        return
    # Lazy tabs: only the open tab's figure is built and drawn.
    tab_units, tab_scores = st.tabs(list(VIEWS.values()), key="sd_view", on_change="rerun")
    if tab_units.open:
        with tab_units:
            share = choice("Units", [False, True], key="sd_share",
                           format_func={False: "counts", True: "shares of each layer's units (%)"}.__getitem__)
            fig = overview_figure(PATH, KEY, "units", tuple(chosen), share, "pct", LIGHT, COMPARE)
            if LIGHT:
                svg_chart(fig, key="sd_unit_hist_svg")
            else:
                st.plotly_chart(fig, config=config("unit-categories"), key="sd_unit_hist")
            export_buttons(partial(vsd.unit_histogram, layer_records(PATH, KEY, COMPARE), list(chosen), share=share),
                           f"{run['run_id']}-unit-categories", key="sd_x_units")
    if tab_scores.open:
        with tab_scores:
            layer_scores_tab(chosen)


def layer_scores_tab(chosen: list[str]) -> None:
    metric = choice("Value", ["pct", "S"], key="sd_metric",
                    format_func={"pct": "percentage (softmax)", "S": "raw score S"}.__getitem__)
    chart(partial(overview_figure, PATH, KEY, "scores", tuple(chosen), False, metric, False, COMPARE),
          spec=("sd_scores", PATH, KEY, tuple(chosen), metric, COMPARE), config=config(f"layer-scores-{metric}"),
          key="sd_layer_scores")
    st.caption("Percentages are `100 · softmax([S_dynamic, S_static, 1])`: the constant identical term "
               "squeezes them, so a factor's share stays under 47% even at perfect correlation. The raw S "
               "(a variance-weighted correlation: near [-1, 1], above 1 when one factor's features vary "
               "more than all features together) and the identical share are in the hover; switch to "
               "*raw score S* to plot them.")


overview()

layer_table = vsd.layers_table(layers)
csv_button(st, "Download layers (CSV)", layer_table, "layers")
table_box = st.expander("Layer table", key="sd_layer_table", on_change="rerun")  # lazy: drawn when opened
if table_box.open:
    with table_box:
        tables.table(layer_table, hide_index=True, width="stretch")


st.subheader("Units of one layer")


def unit_key(row: int) -> str:
    return f"sd_unit-{row}"


def pick_unit(row: int, value: str) -> None:
    """SVG scatter click: the unit ``value`` becomes the selected unit."""
    if value.isdigit():
        st.session_state[unit_key(row)] = int(value)


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
    ui_cache.url_state("model", labels, labels[0] if labels else None, key="sd_layer_model")
    model = left.selectbox("Model", labels, key="sd_layer_model")
    recs = vsd.by_model(layers, [model])[model]
    if not recs:
        st.info(f"{md_code(model)} has no layers in this run.")
        return
    names = [r["layer"] for r in recs]
    ui_cache.url_state("layer", names, names[-1], key=f"sd_layer-{model}")
    name = right.selectbox("Layer", names, key=f"sd_layer-{model}", format_func=lambda n: f"{names.index(n)} · {n}")
    rec = recs[names.index(name)]
    row = layers.index(rec)
    try:
        s_static, s_dynamic = units[store.units_key("static", row)], units[store.units_key("dynamic", row)]
    except KeyError as e:
        st.error(f"run {md_text(run['path'])}: {md_code(store.UNITS)} has no {md_text(e.args[0])} for "
                 f"{md_text(model)} · {md_text(name)}")
        return
    table = vsd.unit_table(s_static, s_dynamic, lam)
    scored = table.index[table["category"] != "dead"]
    key = unit_key(row)
    unit = int(ui_cache.url_state("unit", range(len(table)), int(scored[0]) if len(scored) else 0, key=key))
    n_dead = int((table["category"] == "dead").sum())
    st.caption(f"{len(table)} units · " + " · ".join(f"{c} {int((table['category'] == c).sum())}"
                                                     for c in vsd.CATEGORIES)
               + f" · S_static {vsd.fmt_score(rec['S_static'])}, S_dynamic {vsd.fmt_score(rec['S_dynamic'])}"
               + (f" · the {n_dead} dead units (zero variance, no score) are not plotted" if n_dead else ""))

    plot, hist = st.columns([3, 2])
    with plot:
        fig = scatter_figure(PATH, KEY, row, lam, unit, LIGHT)
        chart_key = f"sd_scatter-{row}"
        many = len(scored) > vsd.MAX_SCATTER
        if LIGHT:
            svg_chart(fig, key=f"{chart_key}-svg", on_pick=partial(pick_unit, row))
        else:
            st.plotly_chart(fig, config=config(f"units-{model}-{name}"), key=chart_key,
                            on_select="ignore" if many else partial(pick_point, chart_key, row),
                            selection_mode="points")
        export_buttons(partial(vsd.unit_scatter, s_static, s_dynamic, lam, selected=unit),
                       f"{run['run_id']}-units-{model}-{name}", key=f"sd_x_sc-{row}")
        if many:
            st.caption(f"{len(scored)} scored units: shown as a 2-D histogram; pick a unit by its index below.")
    with hist:
        warn([w for w in layer_warnings if str(w["layer"]) == str(name)])
        fig = histogram_figure(PATH, KEY, row, lam, LIGHT)
        if LIGHT:
            svg_chart(fig, key=f"sd_hist-{row}-svg")
        else:
            st.plotly_chart(fig, config=config(f"scores-{model}-{name}"), key=f"sd_hist-{row}")
        export_buttons(partial(vsd.score_histograms, s_static, s_dynamic, lam),
                       f"{run['run_id']}-scores-{model}-{name}", key=f"sd_x_h-{row}")

    pick, scores = st.columns([2, 3])
    categories = table["category"].tolist()
    pick.selectbox("Unit", range(len(table)), key=key, format_func=lambda u: f"{u} · {categories[u]}",
                   help="Type its index, or click a point in the scatter")
    sel = table.iloc[int(st.session_state[key])]
    with scores:
        metric_row([Metric("s_static", "—" if sel["category"] == "dead" else f"{sel['s_static']:.3f}"),
                    Metric("s_dynamic", "—" if sel["category"] == "dead" else f"{sel['s_dynamic']:.3f}"),
                    Metric("category", str(sel["category"]))])
    csv_button(pick, "Download unit scores (CSV)", table, f"units-{model}-{name}")
    box = st.expander(f"Unit scores of {md_text(model)} · {md_text(name)}", key="sd_unit_table", on_change="rerun")
    if box.open:
        with box:
            tables.table(table, hide_index=True, width="stretch")


one_layer()


def removal_section() -> None:
    """One removal curve at a time, and the AUC table of all of them."""
    if removal is None or not removal.get("curves"):
        st.caption("This run has no removal curves; run the precompute job with `--removal` to measure how the "
                   "task metric falls when the top static, top dynamic or random units are zeroed.")
        return
    curves = removal["curves"]
    choices = [f"{c['model']} · {c['layer']}" for c in curves]
    pick = st.selectbox("Removal curve", range(len(curves)), format_func=choices.__getitem__, key="sd_removal")
    curve = curves[pick]
    n_videos = removal.get("n_videos")
    st.caption(f"{md_text(removal.get('metric', 'metric'))}" + (f" on {md_text(n_videos)} videos" if n_videos else "")
               + " after zeroing the top-k% units by s_static or s_dynamic, against random units. "
               "Lower area under the curve (AUC) = more important units.")
    chart(partial(removal_chart, PATH, KEY, pick), spec=("sd_removal", PATH, KEY, pick),
          config=config(f"removal-{curve['model']}-{curve['layer']}"), key="sd_removal_chart")
    aucs = vsd.removal_table(removal)
    tables.table(aucs, hide_index=True, width="content",
                 column_config={k: st.column_config.NumberColumn(format="%.3f") for k in vsd.AUC_COLUMNS[2:]})
    buttons = st.container(horizontal=True)
    csv_button(buttons, "Download AUCs (CSV)", aucs, "removal-auc")
    csv_button(buttons, "Download removal curves (CSV)", vsd.removal_curves_table(removal), "removal-curves")


def dynamics_section() -> None:
    """Layer scores against the training epoch."""
    if dynamics is None or not dynamics.get("records"):
        st.caption("This run has no training dynamics; run the precompute job with `--checkpoints` on a model's "
                   "per-epoch checkpoints to see the layer scores develop during training.")
        return
    d_layers = vsd.dynamics_layers(dynamics)
    checkpoints = dynamics.get("checkpoints", [])
    st.caption(f"{len(checkpoints)} checkpoints of one training run"
               + (f" ({md_text(checkpoints[0]['label'])} … {md_text(checkpoints[-1]['label'])})" if checkpoints else "")
               + "; a line per layer, shallow light to deep dark; dotted: validation accuracy.")
    left, right = st.columns([1, 2])
    d_metric = choice("Value", ["pct", "S", "units"], key="sd_dyn_metric", container=left,
                      format_func={"pct": "percentage", "S": "raw S", "units": "unit share"}.__getitem__)
    shown = right.multiselect("Layers", d_layers, default=d_layers, key="sd_dyn_layers")
    chart(vsd.dynamics_figure(dynamics, shown, metric=d_metric), config=config(f"dynamics-{d_metric}"),
          key="sd_dynamics")
    d_table = vsd.dynamics_table(dynamics)
    with st.expander("Dynamics table"):
        tables.table(d_table, hide_index=True, width="stretch")
        csv_button(st, "Download dynamics (CSV)", d_table, "dynamics")


def examples_section() -> None:
    """The videos of one example pair at a time."""
    st.caption("What the model is shown: a **static pair** keeps the appearance and breaks the dynamics (the "
               "frames shuffled; for two-stream models the flow recoloured); a **dynamic pair** keeps the motion "
               "and restyles every frame (two styles).")
    names = [str(ex.get("caption") or ex.get("video") or f"example {n}") for n, ex in enumerate(examples)]
    n = st.selectbox("Example", range(len(examples)), format_func=names.__getitem__, key="sd_example") \
        if len(examples) > 1 else 0
    ex = examples[n]
    views = vsd.example_views(ex.get("files", {}), ex.get("styles"))
    st.markdown(f"**{md_text(names[n])}**")
    per_row = min(max(len(views), 1), 7)
    for start in range(0, len(views), per_row):
        cols = st.columns(per_row, vertical_alignment="bottom")
        for col, (_, title, file) in zip(cols, views[start:start + per_row], strict=False):
            with col:
                st.caption(md_text(title))
                try:
                    st.video(ui_cache.run_file(PATH, file, KEY), loop=True, muted=True)
                except RunError as e:
                    st.warning(md_text(e))


@st.fragment
def more() -> None:
    """Removal curves, training dynamics and example pairs, as lazy tabs: only the open one is drawn."""
    names = MORE if examples else MORE[:2]
    tabs = st.tabs(names, key="sd_more", on_change="rerun")
    for tab, section in zip(tabs, (removal_section, dynamics_section, examples_section), strict=False):
        if tab.open:
            with tab:
                section()


st.subheader("Removal, training, examples")
more()
