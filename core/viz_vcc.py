"""Figures of the concept connectome and failure debugger pages (dissertation ch. 5): pure, no Streamlit.

Inputs are the files of ``vcc`` and ``vcc-debug`` runs as loaded from JSON / npz (see
``core/vcc/store.py`` and ``precompute/vcc_debug.py``): graph dicts, metrics rows, fidelity dicts,
segment masks on the ``G x G`` grid and thumbnails as ``(H, W, 3)`` uint8 arrays.

The graph is a plotly figure (:func:`graph_figure`) whose thumbnails are ``data:`` URIs, so it works
offline and loads nothing from a CDN.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from core.errors import RunError
from core.jsonsafe import nan_to_null
from core.vcc.segments import upsample_mask
from core.viz import md_text  # noqa: F401  (re-exported: the pages escape a run's text with it)

TRUE_COLOR = "#1f77b4"
PRED_COLOR = "#ff7f0e"
CONCEPT_COLOR = "#4c78a8"
RANDOM_COLOR = "#7f7f7f"
MATCHED_COLOR = "#e45756"
CLASS_COLOR = "#2e7d32"
EDGE_COLOR = (76, 120, 168)
FADED = "#d0d0d0"
METRICS = [("n_concepts", "concepts"), ("branching_factor", "branching factor"),
           ("mean_edge_weight", "mean edge weight"), ("edge_weight_variance", "edge-weight variance")]
EDGE_COLUMNS = ["source", "target", "weight", "p_value", "significant"]


# ----------------------------------------------------------------------------------------------
# Graph dicts


def is_class(node: Mapping[str, Any]) -> bool:
    return node.get("kind") == "class"


def node_by_id(graph: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {n["id"]: n for n in graph["nodes"]}


def concept_nodes(graph: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [n for n in graph["nodes"] if not is_class(n)]


def class_node(graph: Mapping[str, Any]) -> Mapping[str, Any]:
    return next(n for n in graph["nodes"] if is_class(n))


def level_of(graph: Mapping[str, Any]) -> dict[str, int]:
    """Node id -> level: the layer's index from the input side; the class node above the deepest layer."""
    depth = {layer: i for i, layer in enumerate(graph["layers"])}
    return {n["id"]: len(graph["layers"]) if is_class(n) else depth[n["layer"]] for n in graph["nodes"]}


def node_text(node: Mapping[str, Any]) -> str:
    """Short label: ``layer · concept c (n segments)`` or the class name."""
    if is_class(node):
        return f"class {node.get('label') or node['index']}"
    return f"{node['layer']} · concept {node['index']} ({node['size']} segments)"


def visible_edges(graph: Mapping[str, Any], threshold: float = 0.0, show_insignificant: bool = False
                  ) -> list[Mapping[str, Any]]:
    """Edges drawn at weight ``threshold``: significant ones (and the others when asked), weight >= threshold."""
    out = []
    for e in graph["edges"]:
        w = e.get("weight")
        if w is None or not math.isfinite(w) or w < threshold:
            continue
        if e.get("significant") or show_insignificant:
            out.append(e)
    return out


def edges_table(graph: Mapping[str, Any], node_id: str, direction: str = "in") -> pd.DataFrame:
    """Incoming (``in``) or outgoing (``out``) edges of a node, heaviest first, every edge (with its test)."""
    key = "target" if direction == "in" else "source"
    rows = [{c: e.get(c) for c in EDGE_COLUMNS} for e in graph["edges"] if e[key] == node_id]
    df = pd.DataFrame(rows, columns=EDGE_COLUMNS)
    return df.sort_values("weight", ascending=False, kind="stable").reset_index(drop=True)


def nodes_table(graph: Mapping[str, Any]) -> pd.DataFrame:
    """One row per node: id, layer, concept rank, size, significant edges in and out."""
    kept = [e for e in graph["edges"] if e.get("significant")]
    rows = [{"id": n["id"], "layer": n["layer"], "concept": None if is_class(n) else n["index"], "size": n["size"],
             "edges in": sum(e["target"] == n["id"] for e in kept),
             "edges out": sum(e["source"] == n["id"] for e in kept)} for n in graph["nodes"]]
    return pd.DataFrame(rows, columns=["id", "layer", "concept", "size", "edges in", "edges out"])


def weight_range(graph: Mapping[str, Any]) -> tuple[float, float]:
    ws = [e["weight"] for e in graph["edges"] if e.get("weight") is not None and math.isfinite(e["weight"])]
    return (min(ws), max(ws)) if ws else (0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# Images


def data_uri(data: bytes, name: str = "x.webp") -> str:
    """A file's bytes as a ``data:`` URI (the type from ``name``'s suffix)."""
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
            ".gif": "image/gif"}.get(Path(name).suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_uri(image: np.ndarray, fmt: str = "PNG") -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format=fmt)
    return data_uri(buf.getvalue(), f"x.{fmt.lower()}")


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` that touch a pixel outside it (4-neighbourhood)."""
    m = np.pad(mask, 1, mode="edge")
    inner = m[1:-1, 1:-1]
    edge = (inner != m[:-2, 1:-1]) | (inner != m[2:, 1:-1]) | (inner != m[1:-1, :-2]) | (inner != m[1:-1, 2:])
    return inner & edge


def _hex_rgb(color: str) -> np.ndarray:
    color = color.lstrip("#")
    return np.array([int(color[i:i + 2], 16) for i in (0, 2, 4)], dtype=np.float32)


def segment_overlay(image: np.ndarray, mask: np.ndarray, color: str = "#ffd400", dim: float = 0.35) -> np.ndarray:
    """The segment ``mask`` (grid) over its source ``image``: the rest dimmed, the segment outlined."""
    full = upsample_mask(mask, image.shape[:2])
    out = image.astype(np.float32)
    out[~full] = dim * out[~full] + (1 - dim) * 40.0
    line = _outline(full)
    line |= np.roll(line, 1, axis=0) | np.roll(line, 1, axis=1)
    out[line & full] = _hex_rgb(color)
    return out.round().clip(0, 255).astype(np.uint8)


def side_overlay(image: np.ndarray, masks: np.ndarray, sides: np.ndarray, alpha: float = 0.45,
                 colors: Sequence[str] = (TRUE_COLOR, PRED_COLOR)) -> np.ndarray:
    """Segments of one layer over ``image``, tinted by side (0 true class, 1 predicted class, -1 none),
    with white lines between segments."""
    h, w = image.shape[:2]
    out = image.astype(np.float32)
    label = np.full((h, w), -1, dtype=np.int64)
    for k, (m, s) in enumerate(zip(masks, sides, strict=True)):
        full = upsample_mask(m, (h, w))
        label[full] = k
        if s >= 0:
            out[full] = (1 - alpha) * out[full] + alpha * _hex_rgb(colors[int(s)])
        else:
            out[full] = 0.5 * out[full] + 0.5 * 128.0
    edge = np.zeros((h, w), dtype=bool)
    edge[:-1] |= label[:-1] != label[1:]
    edge[:, :-1] |= label[:, :-1] != label[:, 1:]
    out[edge] = 255.0
    return out.round().clip(0, 255).astype(np.uint8)


def _edge_rgba(weight: float, alpha_lo: float = 0.25) -> str:
    a = alpha_lo + (1 - alpha_lo) * min(max(weight, 0.0), 1.0)
    r, g, b = EDGE_COLOR
    return f"rgba({r},{g},{b},{a:.2f})"


def _tooltip(graph: Mapping[str, Any], node: Mapping[str, Any], count: int | None) -> str:
    lines = [node_text(node)]
    if count:
        lines.append(f"{count} segment{'s' if count != 1 else ''} of the image assigned here")
    kept = [e for e in graph["edges"] if e.get("significant")]
    inc = sorted((e for e in kept if e["target"] == node["id"]), key=lambda e: -e["weight"])
    out = sorted((e for e in kept if e["source"] == node["id"]), key=lambda e: -e["weight"])
    if inc:
        lines.append("in: " + ", ".join(f"{e['source']} ({e['weight']:.2f}, p={e['p_value']:.3g})" for e in inc[:6])
                     + (f" +{len(inc) - 6}" if len(inc) > 6 else ""))
    if out:
        lines.append("out: " + ", ".join(f"{e['target']} ({e['weight']:.2f}, p={e['p_value']:.3g})" for e in out[:6])
                     + (f" +{len(out) - 6}" if len(out) > 6 else ""))
    if not inc and not out:
        lines.append("no significant edges")
    return "\n".join(lines)


def thumbs_for(graph: Mapping[str, Any], read: Callable[[str], bytes]) -> dict[str, str]:
    """Node id -> ``data:`` URI of its first exemplar file, read with ``read(file)`` (missing ones skipped)."""
    out = {}
    for n in concept_nodes(graph):
        files = n.get("exemplar_files") or []
        if files:
            try:
                out[n["id"]] = data_uri(read(files[0]), files[0])
            except (OSError, ValueError, KeyError, RunError):  # a damaged file: the node has no picture
                continue
    return out


def path_edge_set(paths: Sequence[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """The (source, target) pairs on the given paths (``{"nodes": [...]}``)."""
    return {(a, b) for p in paths for a, b in zip(p["nodes"][:-1], p["nodes"][1:], strict=True)}


# ----------------------------------------------------------------------------------------------
# Text from a run


def esc(text: Any) -> str:
    """Text from a run for a plotly label, hover text or title: HTML-escaped (plotly renders a subset of
    HTML, links included) and with ``%{`` broken so a hover template cannot read it as a field."""
    return html.escape(str(text)).replace("%{", "%&#123;")


def md_code(text: Any) -> str:
    """Text from a run as an inline code span (backticks inside it replaced, so the span cannot end early)."""
    return "`" + str(text).replace("`", "'").replace("\n", " ") + "`"


def upload_error(name: str, error: BaseException) -> str:
    """What to tell a person whose uploaded file ``name`` could not be opened as an image (PIL's own messages
    name Python objects such as ``<_io.BytesIO object at 0x...>``)."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return (f"{name} is too large to open safely (over {Image.MAX_IMAGE_PIXELS:,} pixels): upload a smaller "
                "copy of the image.")
    if isinstance(error, UnidentifiedImageError):
        return (f"{name} is not an image this page can read: upload a PNG, JPEG, WebP or BMP file.")
    if isinstance(error, (OSError, SyntaxError, ValueError, EOFError)):
        return f"{name} looks damaged or cut short and could not be decoded: upload the image again or another copy."
    return f"{name} could not be opened as an image: upload a PNG, JPEG, WebP or BMP file."


# ----------------------------------------------------------------------------------------------
# The clickable plotly graph

NODE_TRACE = "concepts"
"""Name of the trace whose points are the nodes (their ``customdata`` is the node id)."""


def graph_positions(graph: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """Node id -> fixed ``(x, y)``: ``y`` the level (a row per layer, the class node on top), ``x`` the
    node's place in its row, centred; rows are ordered top-down by the mean place of each node's
    significant targets (fewer crossings), ties by concept rank. Depends on the graph only, so a node
    stays where it is whatever the threshold or selection."""
    levels = level_of(graph)
    rows: dict[int, list[Mapping[str, Any]]] = {}
    for n in graph["nodes"]:
        rows.setdefault(levels[n["id"]], []).append(n)
    targets: dict[str, list[str]] = {}
    for e in graph["edges"]:
        if e.get("significant"):
            targets.setdefault(e["source"], []).append(e["target"])
    pos: dict[str, tuple[float, float]] = {}
    for level in sorted(rows, reverse=True):
        nodes = rows[level]

        def key(n: Mapping[str, Any]) -> tuple[float, int, str]:
            xs = [pos[t][0] for t in targets.get(n["id"], []) if t in pos]
            return (sum(xs) / len(xs) if xs else math.inf, int(n.get("index") or 0), str(n["id"]))

        ordered = sorted(nodes, key=key)
        for k, n in enumerate(ordered):
            pos[n["id"]] = (k - (len(ordered) - 1) / 2, float(level))
    return pos


def _node_box(graph: Mapping[str, Any], node: Mapping[str, Any]) -> float:
    """Side of a node's picture in data units (rows are 1.5 units apart, neighbours 1): by its segments."""
    sizes = [n["size"] for n in concept_nodes(graph)] or [1]
    return 0.55 + 0.4 * math.sqrt(node["size"] / max(max(sizes), 1))


def graph_figure(graph: Mapping[str, Any], thumbs: Mapping[str, str] | None = None, *, threshold: float = 0.0,
                 show_insignificant: bool = False, highlight: Mapping[str, int] | None = None,
                 path_edges: set[tuple[str, str]] | None = None, accent: str = TRUE_COLOR,
                 selected: str | None = None, revision: str = "graph", height: int | None = None) -> go.Figure:
    """The VCC as a plotly figure whose nodes can be clicked (``st.plotly_chart(on_select=...)``; the
    node trace is named :data:`NODE_TRACE`, each point's ``customdata`` its node id: :func:`clicked_node`).

    Rows are the layers from the input side (bottom) to the class node (top), at the fixed places of
    :func:`graph_positions`; a concept shows its first exemplar (``thumbs``: node id -> ``data:`` URI) in
    a square sized by its segments; edges point upwards, width and opacity by weight, only significant
    ones (at or above ``threshold``) unless ``show_insignificant`` (then dashed). ``highlight`` (node id ->
    segment count) rings what a debugged image activates and labels it ``×n``, ``path_edges`` are drawn
    in ``accent``, the rest faded. ``selected`` is framed in red. ``revision`` keeps zoom across reruns.
    """
    thumbs = thumbs or {}
    pos = graph_positions(graph)
    nodes = node_by_id(graph)
    focus = highlight is not None
    highlight = highlight or {}
    n_rows = len(graph["layers"]) + 1
    widest = max((sum(1 for p in pos.values() if p[1] == lv) for lv in range(n_rows)), default=1)
    fig = go.Figure()
    box = {nid: (0.5 if is_class(n) else _node_box(graph, n)) for nid, n in nodes.items()}
    Y = 1.5  # rows apart, in x units

    def top(nid: str) -> tuple[float, float]:
        x, y = pos[nid]
        return x, y * Y + box[nid] / 2

    def bottom(nid: str) -> tuple[float, float]:
        x, y = pos[nid]
        return x, y * Y - box[nid] / 2

    # -- edges: a few traces by weight (one per style), each a polyline with gaps
    groups: dict[tuple[str, float, str], list[Mapping[str, Any]]] = {}
    for e in visible_edges(graph, threshold, show_insignificant):
        if e["source"] not in pos or e["target"] not in pos:
            continue
        w = float(e["weight"])
        on_path = path_edges is not None and (e["source"], e["target"]) in path_edges
        if on_path:
            style = (accent, round(2.5 + 5 * w, 1), "solid")
        elif focus:
            style = (FADED, 1.0, "solid" if e.get("significant") else "dot")
        else:
            bucket = min(4, int(max(w, 0.0) * 5))
            style = (_edge_rgba((bucket + 0.5) / 5), round(1 + 1.5 * bucket, 1),
                     "solid" if e.get("significant") else "dot")
        groups.setdefault(style, []).append(e)
    mid_x, mid_y, mid_text = [], [], []
    for (color, width, dash), edges in sorted(groups.items(), key=lambda kv: (kv[0][0] == accent, kv[0][1])):
        xs: list[float | None] = []
        ys: list[float | None] = []
        for e in edges:
            (x0, y0), (x1, y1) = bottom(e["target"]), top(e["source"])
            xs += [x1, x0, None]
            ys += [y1, y0, None]
            mid_x.append(x1 + 0.5 * (x0 - x1))
            mid_y.append(y1 + 0.5 * (y0 - y1))
            mid_text.append(f"{esc(e['source'])} → {esc(e['target'])}<br>weight {float(e['weight']):.3f}, "
                            f"p = {float(e.get('p_value') or float('nan')):.3g}"
                            + ("" if e.get("significant") else " (not significant)"))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": color, "width": width, "dash": dash},
                                 hoverinfo="skip", showlegend=False, name="edges"))
    fig.add_trace(go.Scatter(x=mid_x, y=mid_y, mode="markers", marker={"size": 7, "color": "rgba(0,0,0,0)"},
                             hovertext=mid_text, hoverinfo="text", showlegend=False, name="edge details",
                             unselected={"marker": {"opacity": 1}}))

    # -- nodes: pictures (layout images), frames (shapes), then one clickable point per node
    for nid, n in nodes.items():
        x, y = pos[nid]
        s = box[nid]
        count = highlight.get(nid)
        faded = focus and not count and not is_class(n)
        if is_class(n):
            fig.add_shape(type="rect", x0=x - 0.9, x1=x + 0.9, y0=y * Y - s / 2, y1=y * Y + s / 2,
                          fillcolor=CLASS_COLOR, line={"color": "#1b5e20", "width": 2}, layer="below")
            continue
        if nid in thumbs:
            fig.add_layout_image(source=thumbs[nid], x=x, y=y * Y, xref="x", yref="y", sizex=s, sizey=s,
                                 xanchor="center", yanchor="middle", sizing="contain", layer="above",
                                 opacity=0.3 if faded else 1.0)
        else:
            fig.add_shape(type="rect", x0=x - s / 2, x1=x + s / 2, y0=y * Y - s / 2, y1=y * Y + s / 2,
                          fillcolor=CONCEPT_COLOR, opacity=0.3 if faded else 1.0, line={"width": 0})
        ring = accent if count else "#8c8c8c"
        fig.add_shape(type="rect", x0=x - s / 2, x1=x + s / 2, y0=y * Y - s / 2, y1=y * Y + s / 2,
                      line={"color": ring, "width": 4 if count else 1}, layer="above")
    if selected in nodes:
        x, y = pos[selected]
        s = box[selected] + 0.12
        fig.add_shape(type="rect", x0=x - s / 2 - (0.4 if is_class(nodes[selected]) else 0),
                      x1=x + s / 2 + (0.4 if is_class(nodes[selected]) else 0), y0=y * Y - s / 2, y1=y * Y + s / 2,
                      line={"color": "#d62728", "width": 3}, layer="above")
    ids = list(nodes)
    hover = [_tooltip(graph, nodes[i], highlight.get(i)) for i in ids]
    labels = []
    for i in ids:
        n = nodes[i]
        if is_class(n):
            labels.append(f"<b>{esc(str(n.get('label') or i).split(',')[0])}</b>")
        else:
            count = highlight.get(i)
            labels.append(f"{esc(n['index'])}" + (f" <b>×{count}</b>" if count else ""))
    fig.add_trace(go.Scatter(
        x=[pos[i][0] for i in ids], y=[pos[i][1] * Y for i in ids], mode="markers", name=NODE_TRACE,
        customdata=ids, hovertext=[esc(h).replace("\n", "<br>") for h in hover], hoverinfo="text",
        marker={"size": 44, "symbol": "square", "color": "rgba(0,0,0,0)"},
        selected={"marker": {"opacity": 1}}, unselected={"marker": {"opacity": 1}}, showlegend=False))
    fig.add_trace(go.Scatter(  # labels: below the picture (inside the class box)
        x=[pos[i][0] for i in ids],
        y=[pos[i][1] * Y - (0 if is_class(nodes[i]) else box[i] / 2 + 0.07) for i in ids],
        mode="text", text=labels, textposition=["middle center" if is_class(nodes[i]) else "bottom center"
                                                 for i in ids],
        textfont={"size": [15 if is_class(nodes[i]) else 13 for i in ids],
                  "color": ["white" if is_class(nodes[i]) else "#222" for i in ids]},
        hoverinfo="skip", showlegend=False, name="labels"))
    fig.update_xaxes(visible=False, range=[-widest / 2 - 0.2, widest / 2 + 0.2], fixedrange=False)
    fig.update_yaxes(tickvals=[lv * Y for lv in range(n_rows)],
                     ticktext=[esc(x) for x in graph["layers"]] + ["class"], tickfont={"size": 14},
                     showgrid=False, zeroline=False, range=[-0.75, (n_rows - 1) * Y + 0.6],
                     scaleanchor="x", scaleratio=1, constrain="range")
    fig.update_layout(height=height or 130 + 125 * n_rows, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      plot_bgcolor="white", uirevision=revision, clickmode="event+select", dragmode="pan",
                      hovermode="closest", hoverlabel={"align": "left"}, showlegend=False)
    return fig


def clicked_node(selection: Mapping[str, Any] | None, ids: Sequence[str]) -> str | None:
    """The node id picked in a :func:`graph_figure` selection event (``{"points": [...]}``), or None."""
    for p in (selection or {}).get("points", []) or []:
        data = p.get("customdata")
        if isinstance(data, (list, tuple)):
            data = data[0] if data else None
        if isinstance(data, str) and data in ids:
            return data
    return None


# ----------------------------------------------------------------------------------------------
# Metrics and fidelity


def layer_colors(n: int) -> list[str]:
    return sample_colorscale("Viridis", [0.1 + 0.75 * i / max(n - 1, 1) for i in range(n)]) if n else []


def metrics_table(series: Mapping[str, Sequence[Mapping[str, Any]]]) -> pd.DataFrame:
    """The metrics rows of several VCCs (``label -> metrics.json``) as one table."""
    rows = [{"VCC": label, "depth": i, **row} for label, rows_ in series.items() for i, row in enumerate(rows_)]
    cols = ["VCC", "depth", "layer", "n_concepts", "n_edges", "branching_factor", "mean_edge_weight",
            "edge_weight_variance", "weight_edges", "grouped_by"]
    return pd.DataFrame(rows, columns=cols)


def _metric_edges(row: Mapping[str, Any], key: str) -> str:
    """What a metric of a ``metrics.json`` row is computed over, for the hover text."""
    if key in ("mean_edge_weight", "edge_weight_variance"):
        if "weight_edges" not in row:  # runs made before the grouping was recorded: by target
            return f"over {row.get('n_edges')} edges into the layer"
        where = "leaving" if row.get("grouped_by", "source") == "source" else "into"
        return f"over {row['weight_edges']} edges {where} the layer"
    return f"{row.get('n_edges')} edges into the layer"


def weight_grouping(series: Mapping[str, Sequence[Mapping[str, Any]]]) -> set[str]:
    """How the chosen VCCs grouped their edge weights: ``source`` and/or ``target`` (old runs: target)."""
    return {str(r.get("grouped_by", "target" if "weight_edges" not in r else "source"))
            for rows in series.values() for r in rows}


def metrics_figure(series: Mapping[str, Sequence[Mapping[str, Any]]]) -> go.Figure:
    """Graph metrics per layer (5.4.3) of several VCCs side by side: concepts, branching factor, mean
    edge weight and edge-weight variance, one line per VCC; the weight panels say whether the edges
    were grouped at their source layer (the default) or their target layer (:func:`weight_grouping`).
    The x axis is the layer name when every VCC has the same layers, else the relative depth (0 = the
    first analysed layer, 1 = the class node)."""
    grouping = weight_grouping(series)
    suffix = {frozenset({"source"}): " (edges by source layer)", frozenset({"target"}): " (edges by target layer)"
              }.get(frozenset(grouping), " (edges by source or target layer: see the table)")
    titles = [t + (suffix if k in ("mean_edge_weight", "edge_weight_variance") else "") for k, t in METRICS]
    fig = make_subplots(rows=2, cols=2, subplot_titles=titles, horizontal_spacing=0.1,
                        vertical_spacing=0.18)
    layer_sets = {tuple(r["layer"] for r in rows) for rows in series.values()}
    same = len(layer_sets) == 1
    colors = sample_colorscale("Turbo", [0.1 + 0.8 * i / max(len(series) - 1, 1) for i in range(len(series))]) \
        if len(series) > 10 else ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                                  "#7f7f7f", "#bcbd22", "#17becf"]
    for k, (label, rows) in enumerate(series.items()):
        n = len(rows)
        for m, (key, title) in enumerate(METRICS):
            pts = [(i, r) for i, r in enumerate(rows) if not (key == "n_concepts" and r["layer"] == "class")]
            xs = [esc(r["layer"]) if same else (i / max(n - 1, 1)) for i, r in pts]
            ys = [r.get(key) for _, r in pts]
            ys = nan_to_null(ys)
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=esc(label), legendgroup=label,
                                     showlegend=m == 0, line={"color": colors[k % len(colors)]},
                                     customdata=[[esc(r["layer"]), _metric_edges(r, key)] for _, r in pts],
                                     hovertemplate=f"{esc(label)}<br>%{{customdata[0]}}<br>{title}: %{{y:.3g}}"
                                                   "<br>%{customdata[1]}<extra></extra>"),
                          row=m // 2 + 1, col=m % 2 + 1)
    fig.update_xaxes(title_text=None if same else "relative depth (0 first layer, 1 class node)",
                     type="category" if same else "linear")
    fig.update_layout(height=560, margin={"l": 50, "r": 20, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.12})
    return fig


MATCHED_NAMES = {"segments": "matched random (random segment sets' centroids)",
                 "nonnegative": "matched random (non-negative directions)"}


def matched_name(fidelity: Mapping[str, Any]) -> str:
    return MATCHED_NAMES.get(str(fidelity.get("matched_kind")), "matched random directions")


def suppression_figure(fidelity: Mapping[str, Any], layers: Sequence[str] | None = None) -> go.Figure:
    """Concept suppression (5.4.2) per layer: target-class accuracy as each concept direction (thin
    lines; their mean bold), an isotropic random direction (grey: mean and range) or a matched random
    direction (red, dotted: mean and range; runs made before it have none) is subtracted, against eps."""
    per_layer = fidelity.get("layers") or {}
    names = [n for n in (layers or list(per_layer)) if n in per_layer]
    cols = min(max(len(names), 1), 4)
    rows = max(1, -(-len(names) // cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[_supp_title(per_layer[n], n) for n in names] or [""],
                        shared_yaxes=True, horizontal_spacing=0.05, vertical_spacing=0.26 if rows > 1 else 0.2)
    for k, name in enumerate(names):
        d = per_layer[name]
        r, c = k // cols + 1, k % cols + 1
        x = d.get("scales") or fidelity.get("scales")
        concept = np.asarray(d.get("concept") or [], dtype=float).reshape(-1, len(x))
        rand = np.asarray(d.get("random") or [], dtype=float).reshape(-1, len(x))
        matched = np.asarray(d.get("matched") or [], dtype=float).reshape(-1, len(x))
        if len(concept):  # every concept's curve in one trace (gaps between them): one path, not one per concept
            cids = list(d.get("concept_ids") or [])
            cids += [None] * (len(concept) - len(cids))
            xs = [v for _ in concept for v in (*x, None)]
            ys = [v for curve in concept for v in (*curve.tolist(), None)]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": CONCEPT_COLOR, "width": 1},
                                     opacity=0.35, showlegend=False, name="concepts",
                                     customdata=[esc(cid) for cid in cids for _ in (*x, None)],
                                     hovertemplate="%{customdata}<br>eps %{x}× norm: accuracy %{y:.2f}"
                                                   "<extra></extra>"),
                          row=r, col=c)
        if len(rand):
            lo, hi = rand.min(0), rand.max(0)
            fig.add_trace(go.Scatter(x=[*x, *x[::-1]], y=[*hi, *lo[::-1]], fill="toself", mode="lines",
                                     fillcolor="rgba(127,127,127,0.2)", line={"width": 0}, hoverinfo="skip",
                                     showlegend=False), row=r, col=c)
            fig.add_trace(go.Scatter(x=x, y=rand.mean(0), mode="lines+markers", name="isotropic random directions",
                                     line={"color": RANDOM_COLOR, "dash": "dash", "width": 2}, legendgroup="random",
                                     showlegend=k == 0), row=r, col=c)
        if len(matched):
            lo, hi = matched.min(0), matched.max(0)
            fig.add_trace(go.Scatter(x=[*x, *x[::-1]], y=[*hi, *lo[::-1]], fill="toself", mode="lines",
                                     fillcolor="rgba(228,87,86,0.12)", line={"width": 0}, hoverinfo="skip",
                                     showlegend=False), row=r, col=c)
            fig.add_trace(go.Scatter(x=x, y=matched.mean(0), mode="lines+markers", name=matched_name(fidelity),
                                     line={"color": MATCHED_COLOR, "dash": "dot", "width": 2}, legendgroup="matched",
                                     showlegend=k == 0), row=r, col=c)
        if len(concept):
            fig.add_trace(go.Scatter(x=x, y=concept.mean(0), mode="lines+markers", name="concepts (mean)",
                                     line={"color": CONCEPT_COLOR, "width": 3}, legendgroup="concept",
                                     showlegend=k == 0), row=r, col=c)
    fig.update_yaxes(range=[-0.03, 1.03])
    fig.update_yaxes(title_text="target-class accuracy", col=1)
    fig.update_xaxes(title_text="eps (× mean feature norm)")
    fig.update_annotations(font={"size": 13})
    fig.update_layout(height=340 * rows + 110, margin={"l": 50, "r": 20, "t": 60, "b": 90},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.2 if rows == 1 else -0.1, "x": 0})
    return fig


def _supp_title(d: Mapping[str, Any], name: str) -> str:
    """The layer, then on a second line (so neighbouring titles never run into each other) the AUCs: concepts /
    isotropic random / matched random (✓ where the concepts' is lower)."""
    auc = d.get("auc") or {}
    name = esc(name)
    if auc.get("concept") is None:
        return name
    parts = [f"{auc['concept']:.3f}"]
    for key in ("random", "matched"):
        if auc.get(key) is not None:
            parts.append(f"{auc[key]:.3f}{' ✓' if auc['concept'] < auc[key] else ' ✗'}")
    return f"{name}<br>AUC {' / '.join(parts)}"


def suppression_table(fidelity: Mapping[str, Any], layers: Sequence[str] | None = None) -> pd.DataFrame:
    """Per layer the area under the mean accuracy curve (mean accuracy over the eps range) of the concepts,
    the isotropic random directions and the matched random directions, and whether the concepts' is lower
    than each (``None`` where a baseline is missing, as in runs made before the matched one)."""
    per_layer = fidelity.get("layers") or {}
    rows = []
    for name in [n for n in (layers or list(per_layer)) if n in per_layer]:
        d = per_layer[name]
        auc = d.get("auc") or {}
        c, r, m = auc.get("concept"), auc.get("random"), auc.get("matched")
        rows.append({"layer": name, "concepts": len(d.get("concept_ids") or []), "AUC concepts": c,
                     "AUC isotropic random": r, "AUC matched random": m,
                     "below isotropic": None if c is None or r is None else bool(c < r),
                     "below matched": None if c is None or m is None else bool(c < m)})
    return pd.DataFrame(rows, columns=["layer", "concepts", "AUC concepts", "AUC isotropic random",
                                       "AUC matched random", "below isotropic", "below matched"])


def aps_ls_figure(fidelity: Mapping[str, Any], all_edges: bool = False) -> go.Figure:
    """APS (eq. 5.8) against LS (eq. 5.9), one point per concept coloured by layer, with the correlation."""
    aps = fidelity.get("aps_all_edges" if all_edges else "aps") or {}
    ls = fidelity.get("ls") or {}
    corr = fidelity.get("correlation_all_edges" if all_edges else "correlation") or {}
    ids = [k for k in aps if aps[k] is not None and ls.get(k) is not None]
    layers = list(dict.fromkeys(k.rsplit(":", 1)[0] for k in ids))
    colors = dict(zip(layers, layer_colors(len(layers)), strict=True))
    fig = go.Figure()
    for layer in layers:
        pts = [k for k in ids if k.rsplit(":", 1)[0] == layer]
        fig.add_trace(go.Scatter(x=[aps[k] for k in pts], y=[ls[k] for k in pts], mode="markers", name=esc(layer),
                                 text=[esc(k) for k in pts], marker={"color": colors[layer], "size": 9},
                                 hovertemplate="%{text}<br>APS %{x:.3f}<br>LS %{y:.3g}<extra></extra>"))
    r, rho, n = corr.get("pearson"), corr.get("spearman"), corr.get("n")
    stats = (f"Pearson r = {r:.2f}, Spearman ρ = {rho:.2f}" if r is not None and rho is not None
             else "correlation undefined (fewer than 3 concepts with a path)")
    fig.update_layout(title=f"APS vs LS{' (every edge)' if all_edges else ''}: {stats}"
                      + (f", n = {int(n)}" if n else ""),
                      xaxis_title="average path strength to the class node", yaxis_title="logit sum over members",
                      height=380, margin={"l": 60, "r": 20, "t": 50, "b": 40})
    return fig


def shares_figure(rows: Sequence[Mapping[str, Any]], true_name: str, pred_name: str | None) -> go.Figure:
    """Per layer, the share of the image's segments whose nearest concept is in each class's VCC."""
    layers = [esc(r["layer"]) for r in rows]
    t = [r.get("share_true") or 0.0 for r in rows]
    p = [r.get("share_predicted") or 0.0 for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Bar(y=layers, x=t, orientation="h", name=f"true: {esc(true_name)}", marker_color=TRUE_COLOR,
                         customdata=[[r["n_true"], r["n_segments"], r["area_true"]] for r in rows],
                         hovertemplate="%{y}: %{customdata[0]} of %{customdata[1]} segments (%{x:.0%}), "
                                       "%{customdata[2]:.0%} of the image<extra>true class</extra>"))
    if pred_name is not None:
        fig.add_trace(go.Bar(y=layers, x=p, orientation="h", name=f"predicted: {esc(pred_name)}",
                             marker_color=PRED_COLOR,
                             customdata=[[r["n_predicted"], r["n_segments"], r["area_predicted"]] for r in rows],
                             hovertemplate="%{y}: %{customdata[0]} of %{customdata[1]} segments (%{x:.0%}), "
                                           "%{customdata[2]:.0%} of the image<extra>predicted class</extra>"))
    fig.update_layout(barmode="stack", xaxis={"range": [0, 1], "tickformat": ".0%", "title": "share of segments"},
                      yaxis={"autorange": "reversed", "title": None}, height=90 + 42 * len(rows),
                      margin={"l": 10, "r": 10, "t": 30, "b": 40},
                      legend={"orientation": "h", "y": 1.15, "traceorder": "normal"})
    return fig


def segments_table(arrays: Mapping[str, np.ndarray], layers: Sequence[str], layer: int,
                   names: Sequence[str | None]) -> pd.DataFrame:
    """The segments of one layer of a debugged image: area, side, nearest concept, distance."""
    ids = np.flatnonzero(arrays["layer"] == layer)
    rows = []
    for sid in ids:
        s = int(arrays["side"][sid])
        c = int(arrays["concept"][sid])
        rows.append({"segment": int(sid), "area": float(arrays["area"][sid]),
                     "sides with": names[s] if s >= 0 and s < len(names) else "—",
                     "nearest concept": f"{layers[layer]}:{c}" if c >= 0 else "—",
                     "distance": float(arrays["distance"][sid])})
    return pd.DataFrame(rows, columns=["segment", "area", "sides with", "nearest concept", "distance"])
