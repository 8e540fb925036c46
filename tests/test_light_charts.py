"""The dashboard's light chart mode: SVG figures built on the server (core.svg_charts, core.svg_figures,
core.svg_plotly) and every page drawn with them on the shipped demo root, with no plotly chart."""

from __future__ import annotations

import itertools
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from core import svg_figures, svg_plotly
from core import viz_static_dynamic as vsd
from core import viz_vcc as vcc_viz
from core import viz_vtcd as vtcd_viz
from core.static_dynamic import store
from core.svg_charts import nice_ticks
from core.vcc import store as vcc_store
from tests.page_helpers import compare_with

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo"
APP = str(ROOT / "app.py")
SVG = "{http://www.w3.org/2000/svg}"
PAGES = ["home", "predictions", "static_dynamic", "vtcd", "vcc", "vcc_debug"]


def parse(svg: str) -> ET.Element:
    """The SVG as XML (fails the test when it is not well formed)."""
    return ET.fromstring(svg)


def titled(root: ET.Element, tag: str) -> list[tuple[ET.Element, str]]:
    """(element, tooltip) of every ``tag`` element with a ``<title>``."""
    out = []
    for el in root.iter(SVG + tag):
        t = el.find(SVG + "title")
        if t is not None:
            out.append((el, t.text or ""))
    return out


def picks(root: ET.Element) -> list[str]:
    return [el.get("data-pick") for el in root.iter() if el.get("data-pick") is not None]


# -- primitives -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("lo", "hi", "expected"), [(0, 100, [0, 20, 40, 60, 80, 100]),
                                                   (-1.08, 1.08, [-1.0, -0.5, 0.0, 0.5, 1.0]),
                                                   (0, 0.13, [0.0, 0.025, 0.05, 0.075, 0.1, 0.125])])
def test_nice_ticks_known_answers(lo: float, hi: float, expected: list[float]) -> None:
    assert nice_ticks(lo, hi, 5) == pytest.approx(expected)


def test_strings_are_escaped_and_only_data_images_embedded() -> None:
    hostile = '<script>alert(1)</script>"&'
    top = [{"index": 0, "name": hostile, "prob": 0.7}, {"index": 1, "name": "b", "prob": 0.3}]
    svg = svg_figures.topk_bar(top, label=1, title=hostile)
    parse(svg)
    assert "<script" not in svg and "&lt;script&gt;" in svg
    graph = {"layers": ["l<1>"], "nodes": [
        {"id": "l<1>:0", "layer": "l<1>", "index": 0, "size": 3, "members": [], "exemplars": []},
        {"id": "class", "layer": "class", "kind": "class", "label": hostile, "size": 2}],
        "edges": [{"source": "l<1>:0", "target": "class", "weight": 0.5, "p_value": 0.01, "significant": True}]}
    svg = svg_figures.graph(graph, {"l<1>:0": "file:///etc/passwd"})
    root = parse(svg)
    assert "<script" not in svg and "file:" not in svg  # a picture that is not a data: URI is left out
    assert sorted(picks(root)) == sorted(["l<1>:0", "class"])


# -- static / dynamic -------------------------------------------------------------------------------------------

def demo_static_dynamic() -> list[tuple[dict, np.ndarray, np.ndarray]]:
    out = []
    for run in sorted((DEMO / "static-dynamic").iterdir()):
        layers = json.loads((run / "layers.json").read_text())
        with np.load(run / "units.npz", allow_pickle=False) as units:
            for row, rec in enumerate(layers):
                out.append((rec, units[store.units_key("static", row)], units[store.units_key("dynamic", row)]))
    return out


def test_histogram_counts_add_up_to_the_scored_units_of_every_demo_layer() -> None:
    layers = demo_static_dynamic()
    assert len(layers) > 50
    for rec, s_static, s_dynamic in layers:
        root = parse(svg_figures.score_histograms(s_static, s_dynamic, 0.5))
        counts = [int(re.search(r": (\d+) units$", tip).group(1)) for _, tip in titled(root, "rect")]
        expected = int(np.isfinite(s_static).sum() + np.isfinite(s_dynamic).sum())
        assert sum(counts) == expected, (rec["model"], rec["layer"])
        assert expected == 0 or counts  # never an empty plot for a layer with scores


def test_unit_histogram_bars_hold_every_unit() -> None:
    layers = json.loads((DEMO / "static-dynamic" / "zoo-synthetic" / "layers.json").read_text())
    models = list(dict.fromkeys(r["model"] for r in layers))
    root = parse(svg_figures.unit_histogram(layers, models))
    total = sum(int(re.search(r": (\d+) units", tip).group(1)) for _, tip in titled(root, "rect"))
    assert total == sum(int(r["n_units"]) for r in layers)


def test_scatter_points_pick_their_unit_and_large_layers_become_a_2d_histogram() -> None:
    rng = np.random.default_rng(0)
    s, d = rng.uniform(-1, 1, 50), rng.uniform(-1, 1, 50)
    s[3] = np.nan  # a dead unit: not drawn, not pickable
    d[3] = np.nan
    root = parse(svg_figures.unit_scatter(s, d, 0.5, selected=7))
    assert sorted(map(int, picks(root))) == [u for u in range(50) if u != 3]
    big = parse(svg_figures.unit_scatter(rng.uniform(-1, 1, 3000), rng.uniform(-1, 1, 3000), 0.5))
    assert picks(big) == []
    assert sum(int(re.search(r": (\d+) units$", tip).group(1)) for _, tip in titled(big, "rect")) == 3000


# -- VTCD and VCC -----------------------------------------------------------------------------------------------

def test_importance_grid_cells_pick_their_layer_and_head() -> None:
    doc = json.loads((DEMO / "vtcd" / "vit-motion-synthetic" / "concepts.json").read_text())
    units = {(u["layer"], u["head"]) for u in doc["units"]}
    root = parse(svg_figures.importance_grid(doc, "head", next(iter(units))))
    assert {svg_figures.grid_pick(p) for p in picks(root)} == units
    assert svg_figures.grid_pick("blocks.0.attn") is None


def test_graph_nodes_pick_their_ids() -> None:
    run = DEMO / "vcc" / "efficientnet_lite0-photos"
    entry = json.loads((run / "classes.json").read_text())[0]
    graph = json.loads((run / vcc_store.class_file(entry, vcc_store.GRAPH)).read_text())
    root = parse(svg_figures.graph(graph, selected=graph["nodes"][0]["id"]))
    assert sorted(picks(root)) == sorted(n["id"] for n in graph["nodes"])


# -- plotly figures drawn as SVG --------------------------------------------------------------------------------

def demo_figures() -> dict[str, go.Figure]:
    sd = DEMO / "static-dynamic" / "zoo-synthetic"
    layers = json.loads((sd / "layers.json").read_text())
    removal = json.loads((sd / "removal.json").read_text())
    dynamics = json.loads((DEMO / "static-dynamic" / "r3d-motion-training" / "dynamics.json").read_text())
    vt = DEMO / "vtcd" / "vit-motion-synthetic"
    doc = json.loads((vt / "concepts.json").read_text())
    vcc = DEMO / "vcc" / "efficientnet_lite0-photos"
    entry = json.loads((vcc / "classes.json").read_text())[0]
    fidelity = json.loads((vcc / vcc_store.class_file(entry, vcc_store.FIDELITY)).read_text())
    metrics = json.loads((vcc / vcc_store.class_file(entry, vcc_store.METRICS)).read_text())
    models = list(dict.fromkeys(r["model"] for r in layers))
    return {
        "layer scores": vsd.layer_scores(layers, models[:3]),
        "removal": vsd.removal_figure(removal, removal["curves"][0]),
        "dynamics": vsd.dynamics_figure(dynamics, vsd.dynamics_layers(dynamics)),
        "top concepts": vtcd_viz.top_concepts_figure(doc["concepts"], 20, doc.get("ci_level")),
        "layers": vtcd_viz.layer_figure(doc, json.loads((vt / "diagnostics.json").read_text())),
        "heads": vtcd_viz.head_heatmap(doc),
        "attribution": vtcd_viz.attribution_figure(json.loads((vt / "attribution.json").read_text()), None),
        "metrics": vcc_viz.metrics_figure({"a": metrics}),
        "suppression": vcc_viz.suppression_figure(fidelity, None),
        "aps": vcc_viz.aps_ls_figure(fidelity),
    }


def test_every_secondary_demo_figure_converts_to_svg() -> None:
    for name, fig in demo_figures().items():
        svg = svg_plotly.to_svg(fig)
        root = parse(svg)
        marks = sum(1 for tag in ("rect", "circle", "polyline", "polygon", "line") for _ in root.iter(SVG + tag))
        assert marks > 10, name
        assert "Not drawn here" not in svg, name  # every trace type of the dashboard is supported


def test_stacked_bars_and_unsupported_traces() -> None:
    fig = go.Figure([go.Bar(x=["a", "b"], y=[1, 2], name="one"), go.Bar(x=["a", "b"], y=[3, 1], name="two"),
                     go.Pie(values=[1, 2])])
    fig.update_layout(barmode="stack", height=300)
    svg = svg_plotly.to_svg(fig)
    root = parse(svg)
    heights = {tip: float(el.get("height")) for el, tip in titled(root, "rect")}
    assert heights["one: a, 1"] * 3 == pytest.approx(heights["two: a, 3"], rel=0.02)
    assert "Not drawn here: pie" in svg  # left out, and said so


# -- every page in light mode -----------------------------------------------------------------------------------

def html_tags(markup: str) -> list[tuple[str, dict[str, str]]]:
    """Every start tag of ``markup`` with its attributes."""
    from html.parser import HTMLParser

    found: list[tuple[str, dict[str, str]]] = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, {k: v or "" for k, v in attrs}))

    Tags().feed(markup)
    return found


@pytest.mark.parametrize("page", PAGES)
def test_every_demo_page_draws_svg_and_no_plotly(page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCEPT_LENS_ARTIFACTS", str(DEMO))
    monkeypatch.delenv("CONCEPT_LENS_CHARTS", raising=False)
    at = AppTest.from_file(APP, default_timeout=180)
    if page == "vtcd":
        at.query_params["run"] = "vit-motion-real"  # a VTCD run, not the newer Rosetta run
    at = at.run()
    if page != "home":
        at = at.switch_page(f"pages/{page}.py").run()
    assert not at.exception
    assert not at.get("plotly_chart")
    assert not at.dataframe  # short tables are plain tables: no data grid script to fetch in a new tab
    drawn = [json.loads(el.proto.json) for el in at.get("bidi_component")]
    galleries = [d for d in drawn if "class='cl-gallery'" in d]
    if page not in ("home", "predictions"):
        assert len(drawn) > len(galleries)
    if page in ("predictions", "vcc", "vcc_debug"):  # image tiles as one element each gallery
        assert galleries
    for data in drawn:
        if data in galleries:
            tags = html_tags(data)
            assert "script" not in {t for t, _ in tags} and not [a for _, at in tags for a in at if a.startswith("on")]
            sources = [at["src"] for t, at in tags if t == "img"]
            assert sources and all(src.startswith("data:image/") for src in sources)
        else:
            parse(data)
    if page == "predictions":  # a click on a tile inspects it
        assert len(re.findall(r"<figure data-pick='", galleries[0])) == 12


def test_interactive_mode_from_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCEPT_LENS_ARTIFACTS", str(DEMO))
    monkeypatch.delenv("CONCEPT_LENS_CHARTS", raising=False)
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update({"charts": "interactive", "run": "vit-motion-real"})
    at = at.run().switch_page("pages/vtcd.py").run()
    assert not at.exception and at.get("plotly_chart") and at.query_params["charts"] == "interactive"


def test_subplot_titles_never_overlap() -> None:
    """Long subplot titles (the suppression figure's, with their AUCs) are cut to their subplot's width."""
    run = DEMO / "vcc" / "efficientnet_lite0-photos"
    entry = json.loads((run / "classes.json").read_text())[0]
    fidelity = json.loads((run / vcc_store.class_file(entry, vcc_store.FIDELITY)).read_text())
    root = parse(svg_plotly.to_svg(vcc_viz.suppression_figure(fidelity, None)))
    titles = [t for t in root.iter(SVG + "text") if t.get("font-weight") == "600" and t.get("text-anchor") == "middle"]
    assert len(titles) >= 2
    spans = sorted((float(t.get("x")) - 0.3 * float(t.get("font-size")) * len(t.text),
                    float(t.get("x")) + 0.3 * float(t.get("font-size")) * len(t.text)) for t in titles
                   if abs(float(t.get("y")) - float(titles[0].get("y"))) < 1)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans


def test_compared_runs_sit_beside_the_shown_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs picked in the sidebar's "Compare with": their models join the Static / dynamic overview (named
    ``run · model``, the shown run's first model beside the same model of the other run, one shared y
    axis), and their layers x heads grids sit under the VTCD grid on one colour scale."""
    monkeypatch.setenv("CONCEPT_LENS_ARTIFACTS", str(DEMO))
    monkeypatch.delenv("CONCEPT_LENS_CHARTS", raising=False)
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["run"] = "zoo-synthetic"
    at = at.run().switch_page("pages/static_dynamic.py").run()
    compare = compare_with(at, "static-dynamic")
    other = next(o for o in compare.options if "zoo-real-clips" in o)
    compare.select(other).run()
    assert not at.exception
    models = next(m for m in at.multiselect if m.label == "Models")
    assert models.value == ["c2d-motion", "zoo-real-clips · c2d-motion"]
    overview = parse(json.loads(at.get("bidi_component")[0].proto.json))
    panels = [t.text for t in overview.iter(SVG + "text") if t.get("font-weight") == "600"]
    assert panels == ["c2d-motion", "zoo-real-clips · c2d-motion"]

    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["run"] = "vit-motion-synthetic"
    at = at.run().switch_page("pages/vtcd.py").run()
    compare = compare_with(at, "vtcd")
    compare.select(next(o for o in compare.options if "vit-appearance-synthetic" in o)).run()
    assert not at.exception
    grids = [parse(json.loads(el.proto.json)) for el in at.get("bidi_component")[:2]]
    titles = [next(t.text for t in g.iter(SVG + "text")) for g in grids]
    assert titles[1].startswith("vit-appearance-synthetic")
    bars = [[t.text for t in g.iter(SVG + "text")][-5:] for g in grids]  # the colour bars' tick labels
    assert bars[0] == bars[1]  # one colour scale


def test_attribute_values_are_escaped_too() -> None:
    """A colour or name that tries to close its attribute stays a value (no new attribute, no element)."""
    evil = 'red" onload="alert(1)'
    fig = go.Figure([go.Scatter(x=[0, 1, 2], y=[1, 3, 2], mode="lines+markers", name=evil,
                                line={"color": "#123456"}, marker={"color": ["#123456", "#654321", "#000000"]}),
                     go.Bar(x=["a", "b"], y=[1, 2], name="<b>x</b>")])
    fig.layout.shapes = [{"type": "line", "x0": 0, "x1": 1, "y0": 0, "y1": 1, "line": {"color": "#111111"}}]
    svg = svg_plotly.to_svg(fig)
    root = parse(svg)
    assert not [el for el in root.iter() if "onload" in el.attrib]
    from core.svg_charts import Canvas

    c = Canvas(100, 100)
    c.rect(0, 0, 10, 10, evil, stroke=evil)
    c.line(0, 0, 1, 1, evil, dash=evil)
    c.circle(5, 5, 2, evil, stroke=evil)
    c.text(1, 1, "t", color=evil)
    root = parse(c.svg())
    assert not [el for el in root.iter() if "onload" in el.attrib]
    assert [el.get("fill") for el in root.iter(SVG + "rect")] == [evil]  # kept as one plain value


def test_light_tables_are_escaped_html_with_their_formats() -> None:
    """A short table in light mode is one escaped HTML table: labels and number formats of the column config,
    a dash for missing values, numbers right-aligned, and a run's text shown as text."""
    import pandas as pd
    import streamlit as st

    from pages.components.tables import html_table

    df = pd.DataFrame({"name": ["<script>alert(1)</script>", "**bold** & co", None],
                       "share": [0.5, 0.125, float("nan")], "n": [1, 22, 333]})
    out = html_table(df, column_config={"share": st.column_config.NumberColumn("share of units", format="percent"),
                                        "n": st.column_config.NumberColumn(format="%d units")},
                     column_order=["n", "name", "share", "missing"])
    root = ET.fromstring(out[out.index("<table"):])
    assert [th.text for th in root.iter("th")] == ["n", "name", "share of units"]
    rows = [[td.text for td in tr.iter("td")] for tr in root.find("tbody")]
    assert rows == [["1 units", "<script>alert(1)</script>", "50.0%"], ["22 units", "**bold** & co", "12.5%"],
                    ["333 units", "—", "—"]]
    assert "<script>" not in out and "&lt;script&gt;" in out
    other = html_table(pd.DataFrame({"x": [1234567.8, 0.123456]}))
    plain = ET.fromstring(other[other.index("<table"):])
    assert [td.text for td in plain.iter("td")] == ["1234568", "0.1235"]
    assert [td.get("class") for td in root.find("tbody")[0]] == ["num short", None, "num short"]  # 25 chars wrap


def test_galleries_and_metric_rows_are_escaped_html() -> None:
    """Light mode's image tiles and metric rows: one escaped HTML block each; a run's text shown as text, a
    clickable tile carrying its pick, a tile whose image failed showing the problem, nothing remote."""
    import numpy as np

    from pages.components.gallery import Tile, gallery_html
    from pages.components.metrics import Metric, metrics_html

    evil = "<img src=x onerror=alert(1)>'\"&"
    tiles = [Tile(np.zeros((8, 8, 3), np.uint8), f"{evil}\nsecond line", pick=evil),
             Tile(b"\x89PNG fake", "bytes", pick="b"), Tile(None, "broken", problem=evil)]
    out = gallery_html(tiles, columns=3, pickable=True)
    tags = html_tags(out)
    figures = [a for t, a in tags if t == "figure"]
    assert [f.get("data-pick") for f in figures] == [evil, "b", None]
    assert [a["src"][:15] for t, a in tags if t == "img"] == ["data:image/png;", "data:image/png;"]
    assert "onerror" not in {k for _, a in tags for k in a}
    assert out.count("&lt;img src=x onerror") == 4  # in the pick, the alt text, the caption and the problem
    assert "repeat(3," in out and "<br>second line" in out
    zoom = gallery_html(tiles[:1], columns=1, pickable=False)
    assert [a.get("data-zoom") for t, a in html_tags(zoom) if t == "figure"] == ["1"]  # a click enlarges it

    row = metrics_html([Metric("label", evil, help=evil, delta="wrong", tone="bad"), Metric("n", 3)], columns=2)
    tags = html_tags(row)
    assert "img" not in {t for t, _ in tags} and row.count("&lt;img") == 2  # value and help
    assert [a.get("class") for t, a in tags if t == "div" and "delta" in a.get("class", "")] == ["cl-metric-delta bad"]
