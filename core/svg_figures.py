"""The dashboard's first-view figures as SVG strings (see :mod:`core.svg_charts` for why not plotly).

Each mirrors a plotly builder of ``core.viz*`` (named in its docstring), which stays the interactive
version behind the pages' "Interactive charts" switch and the source of exports and reports. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from core import viz
from core import viz_static_dynamic as vsd
from core import viz_vcc as vvcc
from core import viz_vtcd as vvtcd
from core.static_dynamic.scores import CATEGORIES
from core.svg_charts import MUTED, Canvas, Frame, bar_hist, color_at, colorbar, nice_ticks, short, tick_text

GRID_SEP = "|"
"""Separates layer and head in the ``data-pick`` of an importance-grid cell (split at the last one)."""


# ---------------------------------------------------------------------------------------------------------
# Static / dynamic


def unit_histogram(layers: Sequence[Mapping[str, Any]], models: Sequence[str], share: bool = False) -> str:
    """:func:`core.viz_static_dynamic.unit_histogram`: stacked bars of the units in each category per layer
    (shallow to deep), a panel per model (three a row), counts or ``share`` (% of the layer's units)."""
    groups = vsd.by_model(layers, models)
    n = max(len(groups), 1)
    cols = min(n, vsd.FACET_COLUMNS)
    rows = (n - 1) // cols + 1
    width, left, gap_x = 920, 62, 22
    panel_w = (width - left - 10 - gap_x * (cols - 1)) / cols
    label_h = 96  # rotated layer names
    panel_h, top = 250, 64
    height = top + rows * (panel_h + label_h + 40) + 10
    c = Canvas(width, height, "units per category and layer")
    c.legend(left, 22, [(cat, vsd.COLORS[cat]) for cat in CATEGORIES])
    totals_max = 100.0 if share else max((float(r["n_units"]) for recs in groups.values() for r in recs), default=1)
    ticks = nice_ticks(0, totals_max, 4) if not share else [0, 25, 50, 75, 100]
    for i, (model, recs) in enumerate(groups.items()):
        r, k = divmod(i, cols)
        x0 = left + k * (panel_w + gap_x)
        y0 = top + r * (panel_h + label_h + 40) + 18
        f = Frame(c, (x0, y0, panel_w, panel_h), (0, max(len(recs), 1)), (0, totals_max * (1.0 if share else 1.05)))
        f.yaxis(ticks, ("units (%)" if share else "units") if k == 0 else "",
                fmt=(lambda v: f"{v:.0f}") if share else None, labels=k == 0)
        c.text(x0, y0 - 8, model, size=13, weight="600")
        step = panel_w / max(len(recs), 1)
        for j, rec in enumerate(recs):
            total = max(int(rec["n_units"]), 1)
            base = 0.0
            for cat in CATEGORIES:
                count = int(rec[f"n_{cat}"])
                value = 100 * count / total if share else count
                if value > 0:
                    ya, yb = f.py(base + value), f.py(base)
                    c.rect(x0 + j * step + 0.08 * step, ya, 0.84 * step, yb - ya, vsd.COLORS[cat],
                           tip=f"{model} · {rec['layer']}\n{cat}: {count} units ({100 * count / total:.1f}%)")
                base += value
            name = str(rec["layer"])
            lx, ly = x0 + (j + 0.5) * step, y0 + panel_h + 10
            c.text(lx + 4, ly, short(name, 16), size=10, anchor="end", rotate=-55, color=MUTED, tip=name)
        c.line(x0, y0 + panel_h, x0 + panel_w, y0 + panel_h, "#8a8a93")
        c.text(x0 + panel_w / 2, y0 + panel_h + label_h + 4, "layer (shallow → deep)", size=12, anchor="middle")
    return c.svg()


def unit_scatter(s_static: np.ndarray, s_dynamic: np.ndarray, lam: float, selected: int | None = None,
                 max_points: int = vsd.MAX_SCATTER) -> str:
    """:func:`core.viz_static_dynamic.unit_scatter`: s_static (x) against s_dynamic (y) per scored unit,
    coloured by category, with the λ lines; each point picks its unit index. Above ``max_points`` scored
    units a 2-D histogram (not clickable)."""
    s_static = np.asarray(s_static, dtype=np.float64)
    s_dynamic = np.asarray(s_dynamic, dtype=np.float64)
    cats = vsd.classify_units(s_static, s_dynamic, lam)
    scored = cats != "dead"
    lo, hi = vsd.SCORE_RANGE
    lo = min(lo, float(np.nanmin(s_static[scored], initial=lo)), float(np.nanmin(s_dynamic[scored], initial=lo)))
    hi = max(hi, float(np.nanmax(s_static[scored], initial=hi)), float(np.nanmax(s_dynamic[scored], initial=hi)))
    side, left, top = 430, 62, 40
    c = Canvas(left + side + 20, top + side + 50, "unit scores")
    f = Frame(c, (left, top, side, side), (lo, hi), (lo, hi))
    ticks = nice_ticks(lo, hi, 6)
    f.yaxis(ticks, "s_dynamic (dynamic pairs)")
    f.xaxis(ticks, "s_static (per-unit correlation, static pairs)", grid=True)
    if scored.sum() > max_points:
        edges = np.arange(-1.02, 1.0201, 0.04)
        edges[0], edges[-1] = min(edges[0], lo), max(edges[-1], hi)
        z, _, _ = np.histogram2d(s_static[scored], s_dynamic[scored], bins=[edges, edges])
        zmax = max(float(z.max()), 1.0)
        for a in range(len(edges) - 1):
            for b in range(len(edges) - 1):
                if z[a, b] > 0:
                    xa, xb, ya, yb = f.px(edges[a]), f.px(edges[a + 1]), f.py(edges[b + 1]), f.py(edges[b])
                    c.rect(xa, ya, xb - xa + 0.3, yb - ya + 0.3, color_at("Blues", 0.15 + 0.85 * z[a, b] / zmax),
                           tip=f"s_static {edges[a]:.2f}..{edges[a + 1]:.2f}, s_dynamic {edges[b]:.2f}.."
                               f"{edges[b + 1]:.2f}: {int(z[a, b])} units")
        c.text(left, 24, f"{int(scored.sum())} scored units (2-D histogram; darker = more units)", size=12,
               color=MUTED)
    else:
        legend = []
        for cat in CATEGORIES[:-1]:
            m = np.flatnonzero(cats == cat)
            legend.append((f"{cat} ({len(m)})", vsd.COLORS[cat]))
            for u in m:
                c.circle(f.px(s_static[u]), f.py(s_dynamic[u]), 4.2, vsd.COLORS[cat], pick=str(int(u)),
                         tip=f"unit {int(u)} · {cat}\ns_static {s_static[u]:.3f}\ns_dynamic {s_dynamic[u]:.3f}")
        c.legend(left, 24, legend)
        if selected is not None and 0 <= selected < len(cats) and scored[selected]:
            c.circle(f.px(s_static[selected]), f.py(s_dynamic[selected]), 9, "none", stroke="black",
                     stroke_width=2.5, tip=f"unit {selected} (selected)")
    f.vline(lam)
    f.hline(lam)
    spots = {"static": (hi, lo, "end", -6), "dynamic": (lo, hi, "start", 14), "joint": (hi, hi, "end", 14),
             "residual": (lo, lo, "start", -6)}
    for cat, (x, y, anchor, dy) in spots.items():
        c.text(f.px(x) + (-4 if anchor == "end" else 4), f.py(y) + dy, cat, size=13, anchor=anchor, weight="700",
               color=vsd.COLORS[cat] if cat != "residual" else "#8a8a8a")
    return c.svg()


def score_histograms(s_static: np.ndarray, s_dynamic: np.ndarray, lam: float, bin_size: float = 0.05) -> str:
    """:func:`core.viz_static_dynamic.score_histograms`: the two per-unit score histograms with λ, binned by
    :func:`core.viz_static_dynamic.score_bins` (every finite value counted)."""
    panels = []
    for name, values in (("static", s_static), ("dynamic", s_dynamic)):
        counts, edges = vsd.score_bins(values, bin_size)
        panels.append((f"s_{name}", counts, edges, vsd.COLORS[name]))
    lo = min(vsd.SCORE_RANGE[0], *(float(p[2][0]) - bin_size / 2 for p in panels))
    hi = max(vsd.SCORE_RANGE[1], *(float(p[2][-1]) + bin_size / 2 for p in panels))
    return bar_hist(panels, lam, (lo, hi), "per-unit score", width=420, panel_h=165, label="score histograms")


# ---------------------------------------------------------------------------------------------------------
# VTCD


def _grid_values(table: pd.DataFrame, color_by: str) -> tuple[str, str, pd.Series, float]:
    """(title, column, values, colour range: the largest |value| or count) of the grid of ``table``
    (:func:`core.viz_vtcd.head_table`)."""
    title, column = vvtcd.grid_colouring(table, color_by)
    values = pd.to_numeric(table[column], errors="coerce")
    return title, column, values, float(np.nanmax(np.abs(values))) if values.notna().any() else 1.0


def grid_limit(doc: Mapping[str, Any], color_by: str = "head") -> float:
    """The colour range of :func:`importance_grid` for ``doc``: the largest |value| (or the largest count)."""
    return _grid_values(vvtcd.head_table(doc), color_by)[3]


def importance_grid(doc: Mapping[str, Any], color_by: str = "head", selected: tuple[str, int] | None = None,
                    limit: float | None = None, title: str | None = None) -> str:
    """:func:`core.viz_vtcd.importance_grid`: layers (rows, shallow at the top) x heads as squares coloured
    by ``color_by``, labelled with their number of concepts; a square picks ``layer + GRID_SEP + head``.
    ``limit``: the colour range (default :func:`grid_limit`; runs compared side by side share one);
    ``title``: instead of the colouring's name."""
    table = vvtcd.head_table(doc)
    name, column, values, own_limit = _grid_values(table, color_by)
    title = title or name
    layers = list(dict.fromkeys(doc["layers"]))
    diverging = column != "n_concepts"
    lim = (limit if limit is not None else own_limit) or 1.0
    n_heads = int(table["head"].max()) + 1 if len(table) else 1
    cell = max(26, min(46, 420 // max(n_heads, 1)))
    label_w = min(150, 10 + 7 * max((len(str(x)) for x in layers), default=4))
    left, top = label_w + 30, 44
    width = left + n_heads * (cell + 4) + 90
    height = top + len(layers) * (cell + 4) + 46
    c = Canvas(width, height, "importance grid")
    c.text(10, 20, title, size=13, weight="600")
    scale = "RdBu_r" if diverging else "Blues"
    for _, r in table.iterrows():
        li = layers.index(r["layer"]) if r["layer"] in layers else None
        if li is None:
            continue
        v = values.loc[r.name]
        x, y = left + int(r["head"]) * (cell + 4), top + li * (cell + 4)
        t = 0.5 + 0.5 * v / lim if diverging else v / lim
        fill = "#f0f0f2" if pd.isna(v) else color_at(scale, t)
        strong = (not pd.isna(v)) and (abs(v) > 0.55 * lim if diverging else v > 0.6 * lim)
        tip = (f"{r['layer']} · head {int(r['head'])}\n{int(r['n_concepts'])} concepts"
               + ("" if pd.isna(r["importance"]) else f"\nhead importance {r['importance']:+.4f}"
                  + ("" if pd.isna(r["rank"]) else f" (rank {int(r['rank'])})"))
               + ("" if pd.isna(r["top_importance"]) else f"\nbest concept {r['top_importance']:+.4f}"))
        pick = f"{r['layer']}{GRID_SEP}{int(r['head'])}"
        c.rect(x, y, cell, cell, fill, stroke="#ffffff", tip=tip, pick=pick, rx=3)
        c.text(x + cell / 2, y + cell / 2 + 4, str(int(r["n_concepts"])), size=11, anchor="middle",
               color="#ffffff" if strong else "#262730", passive=True)
    if selected is not None and selected[0] in layers:
        x, y = left + int(selected[1]) * (cell + 4), top + layers.index(selected[0]) * (cell + 4)
        c.rect(x - 3, y - 3, cell + 6, cell + 6, "none", stroke="#111", stroke_width=3, rx=4)
    for li, name in enumerate(layers):
        c.text(left - 8, top + li * (cell + 4) + cell / 2 + 4, short(str(name), 22), size=11, anchor="end",
               tip=str(name))
    for h in range(n_heads):
        c.text(left + h * (cell + 4) + cell / 2, top + len(layers) * (cell + 4) + 14, str(h), size=11,
               anchor="middle", color=MUTED)
    c.text(left + n_heads * (cell + 4) / 2, top + len(layers) * (cell + 4) + 34, "head", size=12, anchor="middle")
    c.text(14, top + len(layers) * (cell + 4) / 2, "layer", size=12, anchor="middle", rotate=-90)
    bar_h = max(len(layers) * (cell + 4) - 4, 60)
    colorbar(c, left + n_heads * (cell + 4) + 14, top, bar_h, scale, -lim if diverging else 0.0, lim)
    return c.svg()


def grid_pick(value: str) -> tuple[str, int] | None:
    """The (layer, head) of an :func:`importance_grid` pick."""
    layer, sep, head = str(value).rpartition(GRID_SEP)
    try:
        return (layer, int(head)) if sep else None
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------------------
# VCC


def graph(graph: Mapping[str, Any], thumbs: Mapping[str, str] | None = None, *, threshold: float = 0.0,
          show_insignificant: bool = False, highlight: Mapping[str, int] | None = None,
          path_edges: set[tuple[str, str]] | None = None, accent: str = vvcc.TRUE_COLOR,
          selected: str | None = None, unit: float = 92.0) -> str:
    """:func:`core.viz_vcc.graph_figure`: the concept connectome at the same fixed places (rows are layers,
    the class on top), each concept showing its first exemplar (``thumbs``: id -> ``data:image`` URI) in a
    square sized by its segments, edges upwards with width and opacity by weight; a node picks its id.
    ``highlight`` (id -> segment count) rings what a debugged image activates and labels it ``×n``;
    ``path_edges`` are drawn in ``accent``; ``selected`` is framed in red. ``unit``: px per place."""
    thumbs = thumbs or {}
    pos = vvcc.graph_positions(graph)
    nodes = vvcc.node_by_id(graph)
    focus = highlight is not None
    highlight = highlight or {}
    n_rows = len(graph["layers"]) + 1
    widest = max((sum(1 for p in pos.values() if p[1] == lv) for lv in range(n_rows)), default=1)
    box = {nid: (0.5 if vvcc.is_class(n) else vvcc._node_box(graph, n)) for nid, n in nodes.items()}
    row_gap = 1.5
    label_w = min(190, 16 + 8.6 * max((len(str(x)) for x in graph["layers"]), default=5))
    width = label_w + (widest + 0.6) * unit
    height = ((n_rows - 1) * row_gap + 1.6) * unit
    c = Canvas(width, height, "concept connectome")
    cx0 = label_w + (widest + 0.6) * unit / 2

    def at(nid: str) -> tuple[float, float]:
        x, lv = pos[nid]
        return cx0 + x * unit, height - (0.8 + lv * row_gap) * unit

    for lv, name in enumerate([*graph["layers"], "class"]):
        y = height - (0.8 + lv * row_gap) * unit
        c.text(label_w - 10, y + 5, short(str(name), 22), size=14, anchor="end", tip=str(name))
    edges = [e for e in vvcc.visible_edges(graph, threshold, show_insignificant)
             if e["source"] in pos and e["target"] in pos]
    on_path = [path_edges is not None and (e["source"], e["target"]) in path_edges for e in edges]
    for e, hot in sorted(zip(edges, on_path, strict=True), key=lambda t: (t[1], float(t[0]["weight"]))):
        w = float(e["weight"])
        (x1, y1), (x0, y0) = at(e["source"]), at(e["target"])
        y1 -= box[e["source"]] / 2 * unit
        y0 += box[e["target"]] / 2 * unit
        dash = None if e.get("significant") else "3 4"
        tip = (f"{e['source']} → {e['target']}\nweight {w:.3f}, p = {float(e.get('p_value') or float('nan')):.3g}"
               + ("" if e.get("significant") else " (not significant)"))
        if hot:
            c.line(x1, y1, x0, y0, accent, 2.5 + 5 * w, dash=dash, tip=tip)
        elif focus:
            c.line(x1, y1, x0, y0, vvcc.FADED, 1.0, dash=dash or None, tip=tip)
        else:
            bucket = min(4, int(max(w, 0.0) * 5))
            r, g, b = vvcc.EDGE_COLOR
            c.line(x1, y1, x0, y0, f"rgb({r},{g},{b})", 1 + 1.5 * bucket, dash=dash,
                   opacity=0.25 + 0.75 * (bucket + 0.5) / 5, tip=tip)
    for nid, n in nodes.items():
        x, y = at(nid)
        s = box[nid] * unit
        count = highlight.get(nid)
        tip = vvcc._tooltip(graph, n, count)
        if vvcc.is_class(n):
            w = 1.8 * unit
            c.rect(x - w / 2, y - s / 2, w, s, vvcc.CLASS_COLOR, stroke="#1b5e20", stroke_width=2, tip=tip, pick=nid,
                   rx=6)
            c.text(x, y + 6, short(str(n.get("label") or nid).split(",")[0], 24), size=16, anchor="middle",
                   color="white", weight="700", passive=True)
            continue
        faded = focus and not count
        if nid in thumbs:
            c.image(x - s / 2, y - s / 2, s, s, thumbs[nid], opacity=0.3 if faded else 1.0)
        else:
            c.rect(x - s / 2, y - s / 2, s, s, vvcc.CONCEPT_COLOR, opacity=0.3 if faded else 1.0)
        ring = accent if count else "#8c8c8c"
        # the transparent frame on top is what is clicked and hovered (the picture under it is not)
        c.rect(x - s / 2, y - s / 2, s, s, "transparent", stroke=ring, stroke_width=4 if count else 1, tip=tip,
               pick=nid)
        c.text(x, y + s / 2 + 15, str(n.get("index")) + (f" ×{count}" if count else ""), size=13, anchor="middle",
               weight="700" if count else None)
    if selected in nodes:
        x, y = at(selected)
        s = box[selected] * unit + 10
        w = 1.8 * unit + 10 if vvcc.is_class(nodes[selected]) else s
        c.rect(x - w / 2, y - s / 2, w, s, "none", stroke="#d62728", stroke_width=3, rx=4)
    return c.svg()


def shares(rows: Sequence[Mapping[str, Any]], true_name: str, pred_name: str | None) -> str:
    """:func:`core.viz_vcc.shares_figure`: per layer, the share of the image's segments whose nearest concept
    is in each class's VCC (stacked horizontal bars)."""
    label_w = min(170, 14 + 7 * max((len(str(r["layer"])) for r in rows), default=5))
    width, bar, top = 720, 26, 46
    c = Canvas(width, top + len(rows) * (bar + 10) + 44, "segment shares")
    items = [(f"true: {true_name}", vvcc.TRUE_COLOR)] + ([(f"predicted: {pred_name}", vvcc.PRED_COLOR)]
                                                          if pred_name is not None else [])
    c.legend(label_w, 20, items)
    f = Frame(c, (label_w, top, width - label_w - 20, len(rows) * (bar + 10)), (0, 1), (0, 1))
    f.xaxis([0, 0.25, 0.5, 0.75, 1.0], "share of segments", fmt=lambda v: f"{v:.0%}", grid=True)
    for k, r in enumerate(rows):
        y = top + k * (bar + 10) + 5
        c.text(label_w - 8, y + bar / 2 + 4, short(str(r["layer"]), 22), size=12, anchor="end", tip=str(r["layer"]))
        x = 0.0
        parts = [("true class", r.get("share_true") or 0.0, r.get("n_true"), r.get("area_true"), vvcc.TRUE_COLOR)]
        if pred_name is not None:
            parts.append(("predicted class", r.get("share_predicted") or 0.0, r.get("n_predicted"),
                          r.get("area_predicted"), vvcc.PRED_COLOR))
        for name, share, n, area, color in parts:
            share = float(share) if math.isfinite(float(share)) else 0.0
            if share > 0:
                c.rect(f.px(x), y, f.px(x + share) - f.px(x), bar, color,
                       tip=f"{r['layer']}: {n} of {r.get('n_segments')} segments ({share:.0%}), "
                           f"{float(area or 0):.0%} of the image ({name})")
            x += share
    return c.svg()


# ---------------------------------------------------------------------------------------------------------
# Predictions


def topk_bar(top: Sequence[Mapping[str, Any]], label: int | None = None, title: str = "", width: int = 560) -> str:
    """:func:`core.viz.topk_bar`: class probabilities as horizontal bars, highest on top; the true class in
    green, a wrong top-1 in red."""
    label_w = min(width * 0.4, 16 + 7 * max((len(str(t["name"])) for t in top), default=5))
    bar, top_y = 24, 34 if title else 10
    c = Canvas(width, top_y + len(top) * (bar + 8) + 40, title or "top classes")
    if title:
        c.text(10, 20, title, size=13, weight="600")
    f = Frame(c, (label_w, top_y, width - label_w - 50, len(top) * (bar + 8)), (0, 1.02), (0, 1))
    f.xaxis([0, 0.25, 0.5, 0.75, 1.0], "probability", fmt=lambda v: f"{v:.0%}", grid=True)
    for k, t in enumerate(top):
        p = float(t["prob"])
        color = (viz.CORRECT if label is not None and t["index"] == label
                 else viz.WRONG if k == 0 and label is not None else viz.NEUTRAL)
        y = top_y + k * (bar + 8) + 4
        c.text(label_w - 8, y + bar / 2 + 4, short(str(t["name"]), max(6, int((label_w - 12) / 6.8))), size=12,
               anchor="end", tip=str(t["name"]))
        c.rect(f.px(0), y, f.px(p) - f.px(0), bar, color, tip=f"{t['name']}: {p:.2%}")
        c.text(f.px(p) + 5, y + bar / 2 + 4, f"{p:.1%}", size=11, color=MUTED)
    return c.svg()


__all__ = ["GRID_SEP", "graph", "grid_pick", "importance_grid", "score_histograms", "shares", "tick_text",
           "topk_bar", "unit_histogram", "unit_scatter"]
