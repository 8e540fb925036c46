"""Figures of the concept connectome and failure debugger pages (dissertation ch. 5): pure, no Streamlit.

Inputs are the files of ``vcc`` and ``vcc-debug`` runs as loaded from JSON / npz (see
``precompute/vcc.py`` and ``precompute/vcc_debug.py``): graph dicts, metrics rows, fidelity dicts,
segment masks on the ``G x G`` grid and thumbnails as ``(H, W, 3)`` uint8 arrays.

The graph is drawn with pyvis / vis-network as a self-contained HTML page: the vis-network
JavaScript and CSS are inlined from the files that ship inside the pyvis package and thumbnails are
``data:`` URIs, so it works offline and loads nothing from a CDN (:func:`external_urls` checks).
"""

from __future__ import annotations

import base64
import functools
import io
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

TRUE_COLOR = "#1f77b4"
PRED_COLOR = "#ff7f0e"
CONCEPT_COLOR = "#4c78a8"
RANDOM_COLOR = "#7f7f7f"
MATCHED_COLOR = "#e45756"
CLASS_COLOR = "#2e7d32"
EDGE_COLOR = (76, 120, 168)
FADED = "#d0d0d0"
VIS_VERSION = "vis-9.1.2"
METRICS = [("n_concepts", "concepts"), ("branching_factor", "branching factor"),
           ("mean_edge_weight", "mean edge weight"), ("edge_weight_variance", "edge-weight variance")]
EDGE_COLUMNS = ["source", "target", "weight", "p_value", "significant"]
LEVEL_PREFIX = "__level__:"
"""Ids of the row labels (one text node per layer) in the graph HTML."""


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


def upsample(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A ``(G, G)`` grid mask at image size ``(H, W)``, nearest cell (the grid spans the whole image)."""
    g_h, g_w = mask.shape
    h, w = size
    rows = np.minimum(np.arange(h) * g_h // h, g_h - 1)
    cols = np.minimum(np.arange(w) * g_w // w, g_w - 1)
    return np.asarray(mask, dtype=bool)[rows][:, cols]


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
    full = upsample(mask, image.shape[:2])
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
        full = upsample(m, (h, w))
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


# ----------------------------------------------------------------------------------------------
# The pyvis graph


@functools.lru_cache(maxsize=1)
def vis_assets() -> tuple[str, str]:
    """vis-network's JavaScript and CSS, read from the files installed with pyvis (no CDN)."""
    import pyvis

    lib = Path(pyvis.__file__).parent / "templates" / "lib" / VIS_VERSION
    js = (lib / "vis-network.min.js").read_text(encoding="utf-8")
    css = (lib / "vis-network.css").read_text(encoding="utf-8")
    # The bundle names URLs only in its licence banner, two strings and the SVG namespace; none is
    # fetched. Writing "://" as ":\/\/" keeps every string's value (in JS "\/" is "/") and leaves the
    # page without a single http(s):// text, so a plain search proves that nothing is loaded remotely.
    return js.replace("://", ":\\/\\/"), css.replace("://", ":\\/\\/")


_URL_REFS = [re.compile(r"""<(?:script|link|img|iframe|source)\b[^>]*?\b(?:src|href)\s*=\s*["']?\s*(https?:)?//""",
                        re.I),
             re.compile(r"""url\(\s*["']?\s*(?:https?:)?//""", re.I),
             re.compile(r"""@import\s+["']?\s*(?:url\()?\s*["']?\s*(?:https?:)?//""", re.I),
             re.compile(r"""\bimport\s*\(\s*["']\s*(?:https?:)?//""", re.I)]


def external_urls(html: str) -> list[str]:
    """Every reference in ``html`` that would load a script, style sheet or image from the network
    (``src``/``href`` of script, link, img, iframe, source; CSS ``url()`` and ``@import``; JS ``import()``)."""
    found = []
    for pattern in _URL_REFS:
        for m in pattern.finditer(html):
            found.append(html[m.start(): m.end() + 60])
    return found


def _json_script(obj: Any) -> str:
    """JSON safe to place inside a ``<script>`` element."""
    return json.dumps(obj).replace("</", "<\\/").replace("<!--", "<\\!--")


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


def graph_html(graph: Mapping[str, Any], thumbs: Mapping[str, str] | None = None, *, threshold: float = 0.0,
               show_insignificant: bool = False, highlight: Mapping[str, int] | None = None,
               path_edges: set[tuple[str, str]] | None = None, accent: str = TRUE_COLOR, height: int = 620,
               direction: str = "DU") -> str:
    """The VCC as a self-contained interactive HTML page (pyvis / vis-network, inlined; no URL to fetch).

    Levels are the layers from the input side (bottom with ``direction="DU"``) to the class node;
    concept nodes show their first exemplar (``thumbs``: node id -> ``data:`` URI), sized by the
    number of segments; edges are drawn with width and opacity by weight, only the significant ones
    (and those at or above ``threshold``) unless ``show_insignificant``. ``highlight`` (node id ->
    segment count) and ``path_edges`` mark what a debugged image activates; the rest is faded.
    Hovering a node shows its tooltip; clicking it shows the same text below the graph.
    """
    from pyvis.network import Network

    thumbs = thumbs or {}
    levels = level_of(graph)
    sizes = [n["size"] for n in concept_nodes(graph)] or [1]
    biggest = max(max(sizes), 1)
    net = Network(height=f"{height}px", width="100%", directed=True, cdn_resources="in_line")
    focus = highlight is not None
    for i, layer in enumerate(graph["layers"]):  # a row label per layer, placed first so it sits at the left
        net.add_node(f"{LEVEL_PREFIX}{i}", label=layer, shape="text", level=i, chosen=False,
                     font={"size": 15, "color": "#6b6b6b", "face": "monospace"})
    for node in graph["nodes"]:
        nid = node["id"]
        count = (highlight or {}).get(nid)
        title = _tooltip(graph, node, count)
        if is_class(node):
            net.add_node(nid, label=str(node.get("label") or nid).split(",")[0], shape="box", title=title,
                         level=levels[nid], color={"background": CLASS_COLOR, "border": "#1b5e20"},
                         font={"color": "white", "size": 18}, margin=10)
            continue
        size = 20 + 24 * math.sqrt(node["size"] / biggest)
        label = f"{node['index']}" + (f" ×{count}" if count else "")
        options: dict[str, Any] = {"title": title, "level": levels[nid], "size": size, "label": label,
                                   "font": {"size": 12, "color": "#222", "strokeWidth": 3, "strokeColor": "white"}}
        if focus and not count:
            options["opacity"] = 0.25
        border = accent if count else "#8c8c8c"
        width = 5 if count else 1
        if nid in thumbs:
            net.add_node(nid, shape="image", image=thumbs[nid], brokenImage=None, shapeProperties={
                "useBorderWithImage": True, "interpolation": True}, borderWidth=width, borderWidthSelected=width + 2,
                color={"border": border, "background": "white", "highlight": {"border": "#d62728"}}, **options)
        else:
            net.add_node(nid, shape="dot", color={"background": CONCEPT_COLOR, "border": border},
                         borderWidth=width, **options)
    for e in visible_edges(graph, threshold, show_insignificant):
        on_path = path_edges is not None and (e["source"], e["target"]) in path_edges
        w = float(e["weight"])
        color = accent if on_path else (FADED if focus else _edge_rgba(w))
        net.add_edge(e["source"], e["target"], width=(1 + 7 * w) * (1.4 if on_path else 1.0), color=color,
                     title=f"{e['source']} → {e['target']}\nweight {w:.3f}, p = {e['p_value']:.3g}"
                     + ("" if e.get("significant") else " (not significant)"),
                     dashes=not e.get("significant"), arrows={"to": {"enabled": True, "scaleFactor": 0.4}},
                     hoverWidth=1.5, selectionWidth=2)
    net.options = {
        "layout": {"hierarchical": {"enabled": True, "direction": direction, "levelSeparation": 140,
                                    "nodeSpacing": 105, "treeSpacing": 105, "blockShifting": True,
                                    "edgeMinimization": True, "parentCentralization": True}},
        "physics": {"enabled": False},
        "interaction": {"hover": True, "tooltipDelay": 120, "navigationButtons": False, "multiselect": False},
        "edges": {"smooth": {"enabled": True, "type": "cubicBezier", "forceDirection": "vertical", "roundness": 0.5}},
        "nodes": {"shapeProperties": {"interpolation": True}},
    }
    nodes, edges, _heading, height_css, width_css, options = net.get_network_data()
    js, css = vis_assets()
    legend = " → ".join([*graph["layers"], "class"])
    direction_text = {"DU": "bottom to top", "UD": "top to bottom", "LR": "left to right", "RL": "right to left"}
    return _TEMPLATE.format(css=css, js=js, height=height_css, width=width_css, nodes=_json_script(nodes),
                            edges=_json_script(edges), options=options.replace("</", "<\\/"),
                            legend=f"levels {direction_text.get(direction, '')}: {legend}")


_TEMPLATE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<style>{css}</style>
<style>
body {{ margin: 0; font-family: "Source Sans Pro", sans-serif; font-size: 14px; color: #31333f; }}
* {{ box-sizing: border-box; }}
#net {{ width: {width}; height: {height}; border: 1px solid #e6e6e6; border-radius: 6px; background: white; }}
#legend {{ color: #6b6b6b; margin: 0 0 4px 2px; font-size: 13px; }}
#info {{ white-space: pre-wrap; margin-top: 6px; padding: 6px 8px; background: #f6f7f9; border-radius: 6px;
         min-height: 2.6em; font-size: 13px; }}
div.vis-tooltip {{ white-space: pre-wrap; max-width: 520px; font-family: inherit; font-size: 13px; }}
</style>
<script>{js}</script>
</head>
<body>
<div id="legend">{legend} · hover or click a node for its details; scroll to zoom, drag to pan</div>
<div id="net"></div>
<div id="info">Click a concept or an edge to see its details here.</div>
<script>
var nodes = new vis.DataSet({nodes});
var edges = new vis.DataSet({edges});
var options = {options};
var network = new vis.Network(document.getElementById("net"), {{nodes: nodes, edges: edges}}, options);
network.on("click", function (params) {{
  var info = document.getElementById("info");
  if (params.nodes.length) {{ info.textContent = nodes.get(params.nodes[0]).title; }}
  else if (params.edges.length) {{ info.textContent = edges.get(params.edges[0]).title; }}
}});
</script>
</body>
</html>
"""


def thumbs_for(graph: Mapping[str, Any], read: Callable[[str], bytes]) -> dict[str, str]:
    """Node id -> ``data:`` URI of its first exemplar file, read with ``read(file)`` (missing ones skipped)."""
    out = {}
    for n in concept_nodes(graph):
        files = n.get("exemplar_files") or []
        if files:
            try:
                out[n["id"]] = data_uri(read(files[0]), files[0])
            except (OSError, ValueError, KeyError):
                continue
    return out


def path_edge_set(paths: Sequence[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """The (source, target) pairs on the given paths (``{"nodes": [...]}``)."""
    return {(a, b) for p in paths for a, b in zip(p["nodes"][:-1], p["nodes"][1:], strict=True)}


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
            xs = [r["layer"] if same else (i / max(n - 1, 1)) for i, r in pts]
            ys = [r.get(key) for _, r in pts]
            ys = [None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v for v in ys]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=label, legendgroup=label,
                                     showlegend=m == 0, line={"color": colors[k % len(colors)]},
                                     customdata=[[r["layer"], _metric_edges(r, key)] for _, r in pts],
                                     hovertemplate=f"{label}<br>%{{customdata[0]}}<br>{title}: %{{y:.3g}}"
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
                        shared_yaxes=True, horizontal_spacing=0.05, vertical_spacing=0.2)
    for k, name in enumerate(names):
        d = per_layer[name]
        r, c = k // cols + 1, k % cols + 1
        x = d.get("scales") or fidelity.get("scales")
        concept = np.asarray(d.get("concept") or [], dtype=float).reshape(-1, len(x))
        rand = np.asarray(d.get("random") or [], dtype=float).reshape(-1, len(x))
        matched = np.asarray(d.get("matched") or [], dtype=float).reshape(-1, len(x))
        for i, curve in enumerate(concept):
            cid = (d.get("concept_ids") or [None] * len(concept))[i]
            fig.add_trace(go.Scatter(x=x, y=curve, mode="lines", line={"color": CONCEPT_COLOR, "width": 1},
                                     opacity=0.35, showlegend=False, name=str(cid),
                                     hovertemplate=f"{cid}<br>eps %{{x}}× norm: accuracy %{{y:.2f}}<extra></extra>"),
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
    fig.update_layout(height=320 * rows + 90, margin={"l": 50, "r": 20, "t": 40, "b": 90},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.2 if rows == 1 else -0.1, "x": 0})
    return fig


def _supp_title(d: Mapping[str, Any], name: str) -> str:
    """The layer, then the AUCs: concepts / isotropic random / matched random (✓ where the concepts' is lower)."""
    auc = d.get("auc") or {}
    if auc.get("concept") is None:
        return name
    parts = [f"{auc['concept']:.3f}"]
    for key in ("random", "matched"):
        if auc.get(key) is not None:
            parts.append(f"{auc[key]:.3f}{' ✓' if auc['concept'] < auc[key] else ' ✗'}")
    return f"{name}: AUC {' / '.join(parts)}"


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
        fig.add_trace(go.Scatter(x=[aps[k] for k in pts], y=[ls[k] for k in pts], mode="markers", name=layer,
                                 text=pts, marker={"color": colors[layer], "size": 9},
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
    layers = [r["layer"] for r in rows]
    t = [r.get("share_true") or 0.0 for r in rows]
    p = [r.get("share_predicted") or 0.0 for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Bar(y=layers, x=t, orientation="h", name=f"true: {true_name}", marker_color=TRUE_COLOR,
                         customdata=[[r["n_true"], r["n_segments"], r["area_true"]] for r in rows],
                         hovertemplate="%{y}: %{customdata[0]} of %{customdata[1]} segments (%{x:.0%}), "
                                       "%{customdata[2]:.0%} of the image<extra>true class</extra>"))
    if pred_name is not None:
        fig.add_trace(go.Bar(y=layers, x=p, orientation="h", name=f"predicted: {pred_name}", marker_color=PRED_COLOR,
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
