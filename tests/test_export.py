"""Figures for papers (core.export): SVG with the graph's thumbnails, PDF with a page, PNG at the DPI-scaled
size, colour-blind-safe colours; bad formats and DPIs refused in one line."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import plotly.graph_objects as go
import pytest

from core import export
from core import viz_static_dynamic as vsd
from core import viz_vcc as vv
from core.artifacts import open_run
from core.vcc import store

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"
needs_chromium = pytest.mark.skipif(export.find_chromium() is None, reason="no system Chromium: static export "
                                    "not tried (apt-get install chromium)")


def test_paper_style_maps_colours_to_okabe_ito_and_keeps_greys() -> None:
    fig = go.Figure([go.Bar(x=[1], y=[1], marker_color="#1f77b4"), go.Bar(x=[1], y=[2], marker_color="#ff7f0e"),
                     go.Scatter(x=[1], y=[1], line={"color": "rgba(127,127,127,0.5)"}),
                     go.Scatter(x=[1], y=[1], line={"color": "rgba(31,119,180,0.3)"})])
    out = export.paper_figure(fig)
    assert [out.data[0].marker.color, out.data[1].marker.color] == list(export.OKABE_ITO[:2])
    assert out.data[2].line.color == "rgba(127,127,127,0.5)"  # grey stays
    assert out.data[3].line.color == "rgba(0,114,178,0.3)"  # the same colour, the same new colour, its alpha kept
    assert "sans-serif" in out.layout.font.family and fig.data[0].marker.color == "#1f77b4"  # a copy
    assert export.paper_figure(fig, palette=False).data[0].marker.color == "#1f77b4"


def test_bad_format_and_dpi_are_one_line_errors() -> None:
    fig = go.Figure()
    with pytest.raises(export.ExportError, match="not one of svg, pdf, png"):
        export.export_figure(fig, "gif")
    with pytest.raises(export.ExportError, match="dpi must be"):
        export.export_figure(fig, "png", dpi=5)


@needs_chromium
def test_svg_pdf_and_png_exports_parse() -> None:
    run = open_run(DEMO / "vcc" / "efficientnet_lite0-photos")
    graph = run.load_json(store.class_file(store.classes(run)[0], store.GRAPH))
    thumbs = vv.thumbs_for(graph, run.read_bytes)
    graph_fig = vv.graph_figure(graph, thumbs)
    sd = open_run(DEMO / "static-dynamic" / "zoo-synthetic")
    bars = vsd.layer_scores(sd.load_json("layers.json"), ["r3d-motion"])
    svg_graph, svg_bars = export.export_figures([graph_fig, bars], "svg")
    root = ET.fromstring(svg_graph)
    assert root.tag.endswith("svg")
    images = [e for e in root.iter() if e.tag.endswith("image")]
    assert len(images) >= len(thumbs) > 0  # the concept graph keeps its exemplar thumbnails
    assert any(v.startswith("data:image/") for e in images for k, v in e.attrib.items() if k.endswith("href"))
    assert "#0072B2".lower() in svg_bars.decode().lower().replace("rgb(0, 114, 178)", "#0072b2")
    pdf = export.export_figure(bars, "pdf")
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page[^s]", pdf)) >= 1
    from PIL import Image

    png = export.export_figure(bars, "png", dpi=192, width=400, height=250)
    with Image.open(io.BytesIO(png)) as im:
        assert im.size == (800, 500) and round(im.info["dpi"][0]) == 192
