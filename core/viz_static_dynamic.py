"""Figures and tables of the static / dynamic units page (dissertation ch. 3): pure functions, no Streamlit.

Inputs are the files of a ``static-dynamic`` run as loaded from JSON / npz: ``models.json``,
``layers.json`` (one record per model and layer), per-unit score arrays, ``removal.json`` and
``dynamics.json``. A layer with no live unit has no score: ``null`` in the JSON (NaN in memory),
``—`` in text, a missing bar in a figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from core import viz
from core.static_dynamic import scores
from core.static_dynamic.scores import CATEGORIES

COLORS = {
    "static": "#1f77b4",
    "dynamic": "#ff7f0e",
    "joint": "#9467bd",
    "residual": "#c7c7c7",
    "dead": "#525252",
}
RANDOM = "#7f7f7f"
EXPORT_FORMATS = ("png", "svg")
MAX_SCATTER = 2000
"""Above this many scored units the unit view is a 2-D histogram instead of a scatter."""
FACET_COLUMNS = 3
SCORE_RANGE = [-1.08, 1.08]

LAYER_COLUMNS = ["model", "depth", "layer", "n_units", "n_static", "n_dynamic", "n_joint", "n_residual", "n_dead",
                 "S_static", "S_dynamic", "pct_static", "pct_dynamic", "pct_identical", "lambda"]
UNIT_COLUMNS = ["unit", "s_static", "s_dynamic", "category"]
AUC_COLUMNS = ["model", "layer", "auc_static", "auc_dynamic", "auc_random"]
CURVE_COLUMNS = ["model", "layer", "fraction", "static", "dynamic", "random_mean", "random_std"]
DYNAMICS_COLUMNS = ["checkpoint", "epoch", "val_accuracy", "layer", "n_units", "S_static", "S_dynamic",
                    "pct_static", "pct_dynamic", "pct_identical", "n_static", "n_dynamic", "n_joint", "n_residual",
                    "n_dead"]
MODEL_COLUMNS = ["model", "spec", "architecture", "task", "input", "val_accuracy", "layers", "units",
                 "final layer", "final pct_static", "final pct_dynamic"]

# How a metric of a layer record is plotted: (static key, dynamic key, axis title, hover format).
METRICS = {
    "pct": ("pct_static", "pct_dynamic", "share of the softmax (%)", ".1f"),
    "S": ("S_static", "S_dynamic", "raw layer score S", ".3f"),
    "units": ("share_static", "share_dynamic", "units in the category (%)", ".1f"),
}

EXAMPLE_TITLES = {
    "original": "original",
    "static": "static pair: frames in order",
    "shuffled": "static pair: frames shuffled",
    "style_a": "dynamic pair: style A",
    "style_b": "dynamic pair: style B",
    "flow": "static pair: flow",
    "flow_jittered": "static pair: flow, hue-jittered",
}


def export_config(filename: str, fmt: str = "png") -> dict[str, Any]:
    """Plotly toolbar config (see :func:`core.viz.plotly_config`) whose camera button saves ``fmt`` (png or svg)."""
    fmt = (fmt or "png").lower()
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"figure export format must be one of {EXPORT_FORMATS}, not {fmt!r}")
    config = viz.plotly_config(filename)
    config["toImageButtonOptions"] = {**config["toImageButtonOptions"], "format": fmt}
    return config


def classify_units(s_static: np.ndarray, s_dynamic: np.ndarray, lam: float) -> np.ndarray:
    """Category name per unit (eq. 3.3, :func:`core.static_dynamic.scores.classify_units`); NaN means dead."""
    return np.array(CATEGORIES, dtype=str)[scores.classify_units(s_static, s_dynamic, lam)]


def by_model(layers: Sequence[Mapping[str, Any]], models: Sequence[str] | None = None) -> dict[str, list[Mapping]]:
    """Layer records grouped per model (in ``models`` order, else first appearance), shallow to deep."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for rec in layers:
        groups.setdefault(rec["model"], []).append(rec)
    order = list(models) if models is not None else list(groups)
    return {m: sorted(groups.get(m, []), key=lambda r: r["depth"]) for m in order}


def layers_table(layers: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """``layers.json`` as a table: one row per model and layer, counts, raw scores and percentages."""
    rows = [{c: rec.get(c) for c in LAYER_COLUMNS} for recs in by_model(layers).values() for rec in recs]
    return pd.DataFrame(rows, columns=LAYER_COLUMNS)


def models_table(models: Sequence[Mapping[str, Any]], layers: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """``models.json`` as a table, with each model's unit total and its deepest layer's percentages."""
    groups = by_model(layers)
    rows = []
    for m in models:
        recs = groups.get(m["label"], [])
        last = recs[-1] if recs else {}
        rows.append({
            "model": m["label"], "spec": m.get("spec"), "architecture": m.get("architecture"),
            "task": m.get("task"), "input": m.get("input"), "val_accuracy": m.get("val_accuracy"),
            "layers": len(m.get("layers") or recs), "units": sum(int(r["n_units"]) for r in recs),
            "final layer": last.get("layer"), "final pct_static": last.get("pct_static"),
            "final pct_dynamic": last.get("pct_dynamic"),
        })
    return pd.DataFrame(rows, columns=MODEL_COLUMNS)


def _facets(models: Sequence[str], shared_y: bool = True, **kwargs: Any) -> tuple[go.Figure, list[tuple[int, int]]]:
    """One subplot per model, at most :data:`FACET_COLUMNS` a row; returns the figure and each model's (row, col)."""
    n = max(len(models), 1)
    cols = min(n, FACET_COLUMNS)
    rows = (n - 1) // cols + 1
    # Rows are 320 px with a fixed 150 px gap (rotated layer names, the axis title and the next
    # panel's title must fit in it); plotly wants the gap as a fraction of the plotting area.
    gap, height = 150, 100 + 320 * rows + 150 * (rows - 1)
    fig = make_subplots(rows=rows, cols=cols, shared_yaxes=shared_y, subplot_titles=list(models),
                        horizontal_spacing=0.04 if shared_y else 0.08,
                        vertical_spacing=gap / (height - 100) if rows > 1 else 0.0, **kwargs)
    cells = [(i // cols + 1, i % cols + 1) for i in range(len(models))]
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 90, "b": 10},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.06, "x": 0},
                      modebar={"orientation": "v"})
    fig.update_annotations(font_size=13)
    return fig, cells


def unit_histogram(layers: Sequence[Mapping[str, Any]], models: Sequence[str], share: bool = False) -> go.Figure:
    """Stacked bars per layer (shallow to deep) of the units in each category, one panel per model.

    ``share``: heights are percentages of the layer's units instead of counts.
    """
    groups = by_model(layers, models)
    fig, cells = _facets(list(groups))
    for i, (model, recs) in enumerate(groups.items()):
        row, col = cells[i]
        names = [r["layer"] for r in recs]
        totals = np.array([max(int(r["n_units"]), 1) for r in recs], dtype=np.float64)
        for cat in CATEGORIES:
            counts = np.array([int(r[f"n_{cat}"]) for r in recs], dtype=np.float64)
            pct = 100 * counts / totals
            fig.add_bar(
                x=names, y=pct if share else counts, name=cat, legendgroup=cat, showlegend=i == 0,
                marker_color=COLORS[cat], customdata=np.stack([counts, pct], axis=-1) if recs else None,
                hovertemplate=f"{model} · %{{x}}<br>{cat}: %{{customdata[0]:.0f}} units "
                              f"(%{{customdata[1]:.1f}}%)<extra></extra>",
                row=row, col=col,
            )
        fig.update_xaxes(title_text="layer (shallow → deep)", automargin=True, row=row, col=col)
    fig.update_layout(barmode="stack", bargap=0.15)
    fig.update_yaxes(title_text="units (%)" if share else "units", col=1)
    if share:
        fig.update_yaxes(range=[0, 100])
    return fig


def score(value: Any) -> float:
    """A layer score from ``layers.json`` as a float: NaN for ``null`` (a layer with no live unit)."""
    return float("nan") if value is None else float(value)


def fmt_score(value: Any, spec: str = ".3f") -> str:
    """A layer score as text, ``—`` when there is none (``null`` or NaN)."""
    v = score(value)
    return format(v, spec) if math.isfinite(v) else "—"


LAYER_KEYS = ("S_static", "S_dynamic", "pct_static", "pct_dynamic", "pct_identical")


def _layer_custom(recs: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """``(layers, 5)`` floats: :data:`LAYER_KEYS` of each record (NaN where a layer has no score)."""
    return np.array([[score(r[k]) for k in LAYER_KEYS] for r in recs], dtype=np.float64).reshape(len(recs),
                                                                                                   len(LAYER_KEYS))


def layer_hover(rec: Mapping[str, Any]) -> str:
    """Hover text of a layer's scores (``—`` for a layer with no live unit)."""
    f = {k: fmt_score(rec.get(k), ".3f" if k.startswith("S_") else ".1f") for k in LAYER_KEYS}
    pct = {k: v if v == "—" else f"{v}%" for k, v in f.items()}
    return (f"S_static {f['S_static']} · S_dynamic {f['S_dynamic']}<br>static {pct['pct_static']} · "
            f"dynamic {pct['pct_dynamic']} · identical {pct['pct_identical']}")


def with_shares(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A layer record plus ``share_static`` / ``share_dynamic``: the category's units as % of all units."""
    n = max(int(rec["n_units"]), 1)
    return {**rec, "share_static": 100 * int(rec["n_static"]) / n, "share_dynamic": 100 * int(rec["n_dynamic"]) / n}


def layer_scores(layers: Sequence[Mapping[str, Any]], models: Sequence[str], metric: str = "pct") -> go.Figure:
    """Grouped bars per layer of the static and dynamic layer scores, one panel per model.

    ``metric``: ``pct`` (softmax percentages) or ``S`` (raw layer scores, see
    :func:`core.static_dynamic.scores.layer_score`); the hover shows all of them.
    """
    key_s, key_d, title, _ = METRICS[metric]
    groups = by_model(layers, models)
    fig, cells = _facets(list(groups))
    for i, (model, recs) in enumerate(groups.items()):
        row, col = cells[i]
        names = [r["layer"] for r in recs]
        custom = _layer_custom(recs)
        hover = [layer_hover(r) for r in recs]
        for factor, key in (("static", key_s), ("dynamic", key_d)):
            fig.add_bar(x=names, y=[score(r[key]) for r in recs], name=factor, legendgroup=factor,
                        showlegend=i == 0, marker_color=COLORS[factor], customdata=custom, hovertext=hover,
                        hovertemplate=f"{model} · %{{x}} · {factor}<br>%{{hovertext}}<extra></extra>",
                        row=row, col=col)
        fig.update_xaxes(title_text="layer (shallow → deep)", automargin=True, row=row, col=col)
    fig.update_layout(barmode="group", bargap=0.2, bargroupgap=0.05)
    fig.update_yaxes(title_text=title, col=1)
    if metric == "pct":
        fig.update_yaxes(range=[0, 50])
    else:
        finite = [v for r in layers for v in (score(r["S_static"]), score(r["S_dynamic"])) if math.isfinite(v)]
        fig.update_yaxes(range=[min(-0.1, min(finite, default=0) - 0.05), 1.05],
                         zeroline=True, zerolinecolor="#888")
    return fig


def unit_table(s_static: np.ndarray, s_dynamic: np.ndarray, lam: float) -> pd.DataFrame:
    """One row per unit of a layer: index, both scores (NaN when dead) and category."""
    s_static = np.asarray(s_static, dtype=np.float64)
    s_dynamic = np.asarray(s_dynamic, dtype=np.float64)
    return pd.DataFrame({"unit": np.arange(len(s_static)), "s_static": s_static, "s_dynamic": s_dynamic,
                         "category": classify_units(s_static, s_dynamic, lam)}, columns=UNIT_COLUMNS)


def _quadrant_labels(fig: go.Figure, lam: float) -> None:
    """Category names in the four regions cut by the lambda lines."""
    lo, hi = SCORE_RANGE
    spots = {"static": (hi, lo, "right", "bottom"), "dynamic": (lo, hi, "left", "top"),
             "joint": (hi, hi, "right", "top"), "residual": (lo, lo, "left", "bottom")}
    for cat, (x, y, xa, ya) in spots.items():
        fig.add_annotation(x=x, y=y, text=f"<b>{cat}</b>", showarrow=False, xanchor=xa, yanchor=ya,
                           font={"color": COLORS[cat] if cat != "residual" else "#8a8a8a", "size": 13})


def unit_scatter(s_static: np.ndarray, s_dynamic: np.ndarray, lam: float, selected: int | None = None,
                 max_points: int = MAX_SCATTER) -> go.Figure:
    """s_static (x) against s_dynamic (y) per scored unit, coloured by category, with the lambda lines.

    Dead units are left out. Above ``max_points`` scored units: a 2-D histogram. ``customdata`` of each
    point is its unit index; ``selected`` is ringed.
    """
    s_static = np.asarray(s_static, dtype=np.float64)
    s_dynamic = np.asarray(s_dynamic, dtype=np.float64)
    cats = classify_units(s_static, s_dynamic, lam)
    idx = np.arange(len(cats))
    fig = go.Figure()
    scored = cats != "dead"
    if scored.sum() > max_points:
        fig.add_trace(go.Histogram2d(
            x=s_static[scored], y=s_dynamic[scored], colorscale="Blues", name="units",
            # Edges at ±1.02: a bin's right edge is open, so bins ending at 1 would drop the units at 1.0.
            xbins={"start": -1.02, "end": 1.02, "size": 0.04}, ybins={"start": -1.02, "end": 1.02, "size": 0.04},
            colorbar={"title": {"text": "units"}, "thickness": 12},
            hovertemplate="s_static %{x}<br>s_dynamic %{y}<br>%{z} units<extra></extra>"))
    else:
        for cat in CATEGORIES[:-1]:
            m = cats == cat
            fig.add_scatter(
                x=s_static[m], y=s_dynamic[m], mode="markers", name=f"{cat} ({int(m.sum())})",
                marker={"color": COLORS[cat], "size": 7, "line": {"width": 0.5, "color": "white"}},
                customdata=idx[m, None].tolist(),  # plain lists: a selection returns them as they were given
                hovertemplate=f"unit %{{customdata[0]}} · {cat}<br>s_static %{{x:.3f}}<br>"
                              "s_dynamic %{y:.3f}<extra></extra>")
    if selected is not None and 0 <= selected < len(cats) and scored[selected]:
        fig.add_scatter(x=[s_static[selected]], y=[s_dynamic[selected]], mode="markers", name=f"unit {selected}",
                        customdata=[[selected]],
                        marker={"symbol": "circle-open", "size": 18, "color": "black", "line": {"width": 2.5}},
                        hovertemplate=f"unit {selected}<br>s_static %{{x:.3f}}<br>s_dynamic %{{y:.3f}}<extra></extra>")
    fig.add_vline(x=lam, line={"dash": "dash", "color": "#444", "width": 1})
    fig.add_hline(y=lam, line={"dash": "dash", "color": "#444", "width": 1})
    _quadrant_labels(fig, lam)
    fig.update_layout(
        xaxis={"title": "s_static (per-unit correlation, static pairs)", "range": SCORE_RANGE, "zeroline": False,
               "constrain": "domain"},
        yaxis={"title": "s_dynamic (dynamic pairs)", "range": SCORE_RANGE, "zeroline": False,
               "scaleanchor": "x", "scaleratio": 1, "constrain": "domain"},
        height=520, margin={"l": 10, "r": 10, "t": 60, "b": 10}, modebar={"orientation": "v"},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    )
    return fig


def point_unit(point: Mapping[str, Any]) -> int | None:
    """Unit index of a point of a chart selection (its ``customdata``), or None for a point without one."""
    custom = point.get("customdata")
    if isinstance(custom, Mapping):  # a typed array row can come back as {"0": value}
        custom = list(custom.values())
    if isinstance(custom, (list, tuple)):
        custom = custom[0] if custom else None
    try:
        return int(custom)
    except (TypeError, ValueError):
        return None


def score_bins(values: np.ndarray, bin_size: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(counts (B,), edges (B+1,)) of the finite ``values`` in bins of ``bin_size`` aligned to 0 that span
    [-1, 1] and every value beyond it (S can exceed 1); the last bin includes its right edge, so the
    counts always add up to the number of finite values."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    lo = min(float(v.min()), -1.0) if len(v) else -1.0
    hi = max(float(v.max()), 1.0) if len(v) else 1.0
    first, last = int(np.floor(lo / bin_size + 1e-9)), int(np.ceil(hi / bin_size - 1e-9))
    edges = np.arange(first, max(last, first + 1) + 1) * bin_size
    edges[-1] = max(edges[-1], hi)  # rounding must never leave the largest value outside
    counts, _ = np.histogram(v, bins=edges)
    return counts, edges


def score_histograms(s_static: np.ndarray, s_dynamic: np.ndarray, lam: float, bin_size: float = 0.05) -> go.Figure:
    """Histograms of s_static and s_dynamic of the scored units, each with its lambda line.

    Drawn as bars of :func:`score_bins` counts (not plotly's own binning, which drops values on the
    edges of fixed bins); ``customdata`` of each bar is its [left, right) edges.
    """
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.14,
                        subplot_titles=["s_static", "s_dynamic"])
    lo, hi = SCORE_RANGE
    for row, (name, values) in enumerate((("static", s_static), ("dynamic", s_dynamic)), start=1):
        counts, edges = score_bins(values, bin_size)
        lo, hi = min(lo, edges[0] - bin_size / 2), max(hi, edges[-1] + bin_size / 2)
        fig.add_bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=0.92 * np.diff(edges), name=f"s_{name}",
                    marker_color=COLORS[name], showlegend=False, customdata=np.stack([edges[:-1], edges[1:]], -1),
                    hovertemplate="%{customdata[0]:.2f} to %{customdata[1]:.2f}: %{y} units<extra></extra>",
                    row=row, col=1)
        fig.add_vline(x=lam, line={"dash": "dash", "color": "#444", "width": 1}, row=row, col=1)
        fig.update_yaxes(title_text="units", row=row, col=1)
    fig.update_xaxes(range=[lo, hi])
    fig.update_xaxes(title_text="per-unit score", row=2, col=1)
    fig.update_layout(height=520, margin={"l": 10, "r": 10, "t": 60, "b": 10}, bargap=0.05,
                      modebar={"orientation": "v"})
    return fig


def find_curve(removal: Mapping[str, Any], model: str, layer: str) -> Mapping[str, Any] | None:
    """The removal curve of ``model``'s ``layer``, if the run has one."""
    return next((c for c in removal.get("curves", []) if c["model"] == model and c["layer"] == layer), None)


def removal_figure(removal: Mapping[str, Any], curve: Mapping[str, Any]) -> go.Figure:
    """Metric against the fraction of units removed: top static, top dynamic, random (mean ± std band)."""
    x = [float(f) for f in removal["fractions"]]
    auc = curve.get("auc", {})
    mean = np.asarray(curve["random_mean"], dtype=np.float64)
    std = np.asarray(curve.get("random_std") or np.zeros_like(mean), dtype=np.float64)
    fig = go.Figure()
    fig.add_scatter(x=x, y=mean + std, mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip",
                    legendgroup="random")
    fig.add_scatter(x=x, y=mean - std, mode="lines", line={"width": 0}, fill="tonexty",
                    fillcolor="rgba(127,127,127,0.22)", showlegend=False, hoverinfo="skip", legendgroup="random")

    def name(key: str, label: str) -> str:
        return f"{label} (AUC {auc[key]:.3f})" if key in auc else label

    seeds = removal.get("seeds")
    fig.add_scatter(x=x, y=mean, mode="lines+markers", legendgroup="random",
                    name=name("random", f"random units, mean ± std{f' of {seeds} seeds' if seeds else ''}"),
                    line={"color": RANDOM, "dash": "dash"}, marker={"size": 5},
                    hovertemplate="%{x:.0%} removed: %{y:.3f}<extra>random</extra>")
    for factor in ("static", "dynamic"):
        fig.add_scatter(x=x, y=curve[factor], mode="lines+markers", name=name(factor, f"top {factor} units"),
                        line={"color": COLORS[factor], "width": 2.5}, marker={"size": 6},
                        hovertemplate=f"%{{x:.0%}} removed: %{{y:.3f}}<extra>{factor}</extra>")
    fig.update_layout(
        xaxis={"title": "fraction of the layer's units removed", "tickformat": ".0%", "range": [-0.02, 1.02]},
        yaxis={"title": removal.get("metric", "metric"), "rangemode": "tozero"},
        height=440, margin={"l": 10, "r": 10, "t": 70, "b": 10}, modebar={"orientation": "v"},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    )
    return fig


def removal_table(removal: Mapping[str, Any]) -> pd.DataFrame:
    """One row per removal curve: model, layer and the AUC of static, dynamic and random removal."""
    rows = [{"model": c["model"], "layer": c["layer"], **{f"auc_{k}": c.get("auc", {}).get(k)
                                                          for k in ("static", "dynamic", "random")}}
            for c in removal.get("curves", [])]
    return pd.DataFrame(rows, columns=AUC_COLUMNS)


def removal_curves_table(removal: Mapping[str, Any]) -> pd.DataFrame:
    """Every removal curve in long form: one row per (model, layer, fraction)."""
    rows = []
    for c in removal.get("curves", []):
        std = c.get("random_std") or [None] * len(removal["fractions"])
        for j, f in enumerate(removal["fractions"]):
            rows.append({"model": c["model"], "layer": c["layer"], "fraction": f, "static": c["static"][j],
                         "dynamic": c["dynamic"][j], "random_mean": c["random_mean"][j], "random_std": std[j]})
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def dynamics_table(dynamics: Mapping[str, Any]) -> pd.DataFrame:
    """``dynamics.json`` records with the checkpoint's validation accuracy, by epoch then layer order."""
    acc = {c["label"]: c.get("val_accuracy") for c in dynamics.get("checkpoints", [])}
    rows = [{**{c: r.get(c) for c in DYNAMICS_COLUMNS}, "val_accuracy": acc.get(r["checkpoint"])}
            for r in dynamics.get("records", [])]
    df = pd.DataFrame(rows, columns=DYNAMICS_COLUMNS)
    return df.sort_values("epoch", kind="stable").reset_index(drop=True)


def dynamics_layers(dynamics: Mapping[str, Any]) -> list[str]:
    """Layers of ``dynamics.json`` in the order they first appear (shallow to deep as written)."""
    return list(dict.fromkeys(r["layer"] for r in dynamics.get("records", [])))


def layer_colors(n: int) -> list[str]:
    """``n`` colours from light (shallow) to dark (deep)."""
    if n <= 1:
        return ["#1f4e79"]
    return sample_colorscale("Viridis", [0.9 * (1 - i / (n - 1)) for i in range(n)])


def dynamics_figure(dynamics: Mapping[str, Any], layers: Sequence[str] | None = None,
                    metric: str = "pct") -> go.Figure:
    """Static (left) and dynamic (right) layer metric against the epoch, a line per layer (shallow light,
    deep dark), with the checkpoints' validation accuracy on a second axis when known."""
    key_s, key_d, title, fmt = METRICS[metric]
    all_layers = dynamics_layers(dynamics)
    shown = [name for name in all_layers if layers is None or name in layers]
    colors = dict(zip(all_layers, layer_colors(len(all_layers)), strict=True))
    recs = [with_shares(r) for r in sorted(dynamics.get("records", []), key=lambda r: r["epoch"])]
    checkpoints = sorted(dynamics.get("checkpoints", []), key=lambda c: c["epoch"])
    acc = [(c["epoch"], c["val_accuracy"]) for c in checkpoints if c.get("val_accuracy") is not None]
    fig = make_subplots(rows=1, cols=2, subplot_titles=["static", "dynamic"], horizontal_spacing=0.1,
                        specs=[[{"secondary_y": True}, {"secondary_y": True}]])
    for col, key in ((1, key_s), (2, key_d)):
        for name in shown:
            pts = [r for r in recs if r["layer"] == name]
            fig.add_scatter(x=[r["epoch"] for r in pts], y=[float(r[key]) for r in pts], mode="lines+markers",
                            name=name, legendgroup=name, showlegend=col == 1,
                            line={"color": colors[name], "width": 2}, marker={"size": 5},
                            hovertemplate=f"{name} · epoch %{{x}}<br>{key} %{{y:{fmt}}}<extra></extra>",
                            row=1, col=col, secondary_y=False)
        if acc:
            fig.add_scatter(x=[a[0] for a in acc], y=[a[1] for a in acc], mode="lines", name="val accuracy",
                            legendgroup="val accuracy", showlegend=col == 1,
                            line={"color": "black", "dash": "dot", "width": 1.5},
                            hovertemplate="epoch %{x}: val accuracy %{y:.3f}<extra></extra>",
                            row=1, col=col, secondary_y=True)
            fig.update_yaxes(title_text="val accuracy" if col == 2 else None, range=[0, 1.02], showgrid=False,
                             tickmode="linear", tick0=0, dtick=0.2, row=1, col=col, secondary_y=True)
        fig.update_yaxes(title_text=title if col == 1 else None, row=1, col=col, secondary_y=False)
        fig.update_xaxes(title_text="epoch", row=1, col=col)
    fig.update_layout(height=440, margin={"l": 10, "r": 50, "t": 90, "b": 10}, modebar={"orientation": "v"},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.1, "x": 0})
    return fig


def example_views(files: Mapping[str, str], styles: Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(key, title, file) per video of an example: original, the static pair, the dynamic pair, flow ones,
    then any other key under its own name. ``styles`` (key -> style name) are added to the titles."""
    styles = styles or {}
    known = [k for k in EXAMPLE_TITLES if k in files]
    rest = sorted(k for k in files if k not in EXAMPLE_TITLES)
    views = []
    for k in known + rest:
        title = EXAMPLE_TITLES.get(k, k.replace("_", " "))
        if styles.get(k):
            title += f" ({styles[k]})"
        views.append((k, title, files[k]))
    return views
