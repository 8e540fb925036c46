"""The clickable concept connectome (SVG in light mode, plotly in interactive mode; fixed node places) and
the panel of the node clicked in it, shared by the Concept connectome and Failure debugger pages."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st

from core import svg_figures, ui_cache, viz
from core import viz_vcc as vv
from pages.components import tables
from pages.components.figure_export import export_buttons
from pages.components.metrics import Metric, metric_row
from pages.components.svg_chart import light, svg_chart


def pick_node(graph: Mapping[str, Any], node_key: str, default: str | None = None, param: str | None = "node"
              ) -> str:
    """The node shown in the panel, kept in ``st.session_state[node_key]`` (a click in the graph or the
    select box sets it) and in the URL as ``?{param}=``: ``default``, else the largest concept of the
    deepest layer."""
    ids = [n["id"] for n in graph["nodes"]]
    if default not in ids:
        concepts = vv.concept_nodes(graph)
        default = next((n["id"] for layer in graph["layers"][::-1] for n in concepts
                        if n["layer"] == layer and n["index"] == 0), ids[-1])
    if param:
        return ui_cache.url_state(param, ids, default, key=node_key)
    if st.session_state.get(node_key) not in ids:
        st.session_state[node_key] = default
    return st.session_state[node_key]


def clickable_graph(graph: Mapping[str, Any], thumbs: Mapping[str, str], *, node_key: str, chart_key: str,
                    revision: str, filename: str, **figure: Any) -> None:
    """The graph (SVG, or plotly in interactive mode); clicking a node puts its id into
    ``st.session_state[node_key]`` (and reruns the enclosing fragment). ``figure``: more arguments of
    :func:`core.viz_vcc.graph_figure` (and of :func:`core.svg_figures.graph`)."""
    ids = [n["id"] for n in graph["nodes"]]
    if light():
        def on_pick(value: str) -> None:
            if value in ids:
                st.session_state[node_key] = value

        svg = svg_figures.graph(graph, thumbs, selected=st.session_state.get(node_key),
                                **{k: v for k, v in figure.items() if k != "height"})
        svg_chart(svg, key=f"{chart_key}-svg", on_pick=on_pick)
        export_buttons(functools.partial(vv.graph_figure, graph, thumbs, revision=revision, **figure), filename,
                       key=f"{chart_key}-export")
        return

    def on_click() -> None:
        state = st.session_state.get(chart_key)
        node = vv.clicked_node(getattr(state, "selection", None) or (state or {}).get("selection"), ids)
        if node is not None:
            st.session_state[node_key] = node

    fig = vv.graph_figure(graph, thumbs, selected=st.session_state.get(node_key), revision=revision, **figure)
    st.plotly_chart(fig, key=chart_key, on_select=on_click, selection_mode="points",
                    config={**viz.plotly_config(filename), "scrollZoom": True,
                            "modeBarButtonsToRemove": ["select2d", "lasso2d"]})
    export_buttons(fig, filename, key=f"{chart_key}-export")


def node_select(graph: Mapping[str, Any], node_key: str) -> str:
    """A select box over the graph's nodes (the keyboard way to pick one), on ``node_key``."""
    nodes = vv.node_by_id(graph)
    return st.selectbox("Node (or click one in the graph)", list(nodes), key=node_key,
                        format_func=lambda i: vv.node_text(nodes[i]))


def node_panel(graph: Mapping[str, Any], node_id: str, exemplars: Callable[[Mapping[str, Any]], None],
               panel_key: str) -> None:
    """Heading, counts, the node's exemplars (drawn by ``exemplars(node)``) and its incoming and outgoing edges,
    in a container keyed ``node_panel-{panel_key}`` (CSS class ``st-key-node_panel-...``)."""
    with st.container(key=f"node_panel-{panel_key}"):
        _panel(graph, node_id, exemplars)


def _panel(graph: Mapping[str, Any], node_id: str, exemplars: Callable[[Mapping[str, Any]], None]) -> None:
    nodes = vv.node_by_id(graph)
    node = nodes[node_id]
    layers = graph["layers"]
    st.markdown(f"#### {vv.md_text(vv.node_text(node))}")
    inc, out = vv.edges_table(graph, node_id, "in"), vv.edges_table(graph, node_id, "out")
    metric_row([Metric("layer", node["layer"]), Metric("segments" if not vv.is_class(node) else "images", node["size"]),
                Metric("significant edges in", int(inc["significant"].sum()) if len(inc) else 0),
                Metric("significant edges out", int(out["significant"].sum()) if len(out) else 0)])
    if vv.is_class(node):
        st.caption("The class node: its incoming edges are plain TCAV scores of the last layer's concepts for the "
                   "class logit over the class images.")
    else:
        exemplars(node)
    edge_cfg = {"weight": st.column_config.NumberColumn(format="%.3f"),
                "p_value": st.column_config.NumberColumn("p-value", format="%.4f")}
    left, right = st.columns(2)
    with left:
        st.markdown(f"**Incoming edges** ({len(inc)})")
        if len(inc):
            edge_table(inc, edge_cfg)
        else:
            st.caption("none: the first analysed layer has no incoming edges" if node["layer"] == layers[0]
                       else "none")
    with right:
        st.markdown(f"**Outgoing edges** ({len(out)})")
        if len(out):
            edge_table(out, edge_cfg)
        else:
            st.caption("none")


def edge_table(table: Any, config: Mapping[str, Any]) -> None:
    """A node's edges (a plain table in light mode: no data-grid script to load)."""
    tables.table(table, hide_index=True, width="stretch", column_config=config)
