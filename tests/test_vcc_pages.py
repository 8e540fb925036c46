"""The concept connectome and failure debugger pages on tiny real runs (AppTest), and the pyvis graph
HTML: self-contained, no URL to a CDN, thumbnails as data: URIs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import viz_vcc as vv
from core.artifacts import open_run
from tests.page_helpers import texts
from tests.test_vcc_job import make_runs

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
TIMEOUT = 90


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_runs(tmp_path_factory.mktemp("vcc-pages"))


def open_page(root: Path, page: str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("CONCEPT_LENS_ARTIFACTS", str(root))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    return at.switch_page(page).run()


def iframes(at: AppTest) -> list[str]:
    """The HTML of every st.iframe on the page."""
    return [e.proto.srcdoc for e in at.get("iframe")]


def assert_offline(html: str) -> None:
    assert "http://" not in html and "https://" not in html
    assert not vv.external_urls(html)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*//""", html)
    assert "new vis.Network" in html and "vis-network" in html  # the library is inlined


# -- the graph HTML ---------------------------------------------------------------------------------------------


def test_pyvis_html_is_self_contained(runs: dict[str, Any]) -> None:
    run = open_run(runs["vcc"])
    graph = run.load_json("classes/0-red/graph.json")
    thumbs = vv.thumbs_for(graph, run.read_bytes)
    assert set(thumbs) == {n["id"] for n in vv.concept_nodes(graph)}
    html = vv.graph_html(graph, thumbs)
    assert_offline(html)
    data = json.loads(re.search(r"new vis\.DataSet\((\[.*?\])\);\nvar edges", html, re.S).group(1))
    labels = [n for n in data if n["id"].startswith(vv.LEVEL_PREFIX)]
    assert [n["label"] for n in labels] == graph["layers"]
    by_id = {n["id"]: n for n in data if n not in labels}
    assert set(by_id) == {n["id"] for n in graph["nodes"]}
    levels = vv.level_of(graph)
    for n in graph["nodes"]:
        assert by_id[n["id"]]["level"] == levels[n["id"]]
        if not vv.is_class(n):
            assert by_id[n["id"]]["shape"] == "image" and by_id[n["id"]]["image"].startswith("data:image/webp;base64,")
    assert by_id["class:0"]["level"] == len(graph["layers"])
    edges = json.loads(re.search(r"var edges = new vis\.DataSet\((\[.*?\])\);", html, re.S).group(1))
    assert len(edges) == sum(e["significant"] for e in graph["edges"])  # insignificant ones hidden
    heavy = vv.graph_html(graph, thumbs, threshold=0.5, show_insignificant=True)
    edges = json.loads(re.search(r"var edges = new vis\.DataSet\((\[.*?\])\);", heavy, re.S).group(1))
    assert len(edges) == sum(e["weight"] >= 0.5 for e in graph["edges"])


def test_suppression_figure_and_table_of_a_run_without_the_matched_baseline() -> None:
    """Runs made before the matched baseline (no ``matched`` key): the isotropic one only, empty cells."""
    fid = {"scales": [0.0, 1.0], "layers": {"a": {"concept": [[1.0, 0.2]], "random": [[1.0, 0.8]],
                                                   "concept_ids": ["a:0"], "auc": {"concept": 0.6, "random": 0.9},
                                                   "falls_faster": True}}}
    fig = vv.suppression_figure(fid, ["a"])
    assert "isotropic random directions" in {t.name for t in fig.data}
    assert not any("matched" in (t.name or "") for t in fig.data)
    assert fig.layout.annotations[0].text == "a: AUC 0.600 / 0.900 ✓"
    table = vv.suppression_table(fid, ["a"])
    assert table.iloc[0]["AUC matched random"] is None and table.iloc[0]["below isotropic"]
    fid["layers"]["a"].update(matched=[[1.0, 0.1]], auc={"concept": 0.6, "random": 0.9, "matched": 0.55})
    fid["matched_kind"] = "segments"
    assert vv.suppression_figure(fid, ["a"]).layout.annotations[0].text == "a: AUC 0.600 / 0.900 ✓ / 0.550 ✗"
    assert not vv.suppression_table(fid, ["a"]).iloc[0]["below matched"]


def test_metrics_figure_labels_the_edge_grouping() -> None:
    old = [{"layer": "a", "n_concepts": 2, "n_edges": 0, "branching_factor": None, "mean_edge_weight": None,
            "edge_weight_variance": None}]
    new = [{**old[0], "mean_edge_weight": 0.5, "weight_edges": 2, "grouped_by": "source"}]
    titles = lambda series: [a.text for a in vv.metrics_figure(series).layout.annotations]  # noqa: E731
    assert "mean edge weight (edges by source layer)" in titles({"x": new})
    assert "mean edge weight (edges by target layer)" in titles({"x": old})
    assert "edge-weight variance (edges by source or target layer: see the table)" in titles({"x": new, "y": old})
    assert vv.weight_grouping({"x": new, "y": old}) == {"source", "target"}


def test_external_urls_finds_cdn_references() -> None:
    assert vv.external_urls('<script src="https://cdn.example.org/vis.js"></script>')
    assert vv.external_urls("<link rel='stylesheet' href='//cdn.example.org/vis.css'>")
    assert vv.external_urls("<style>@import url(https://fonts.example.org/x.css);</style>")
    assert not vv.external_urls('<img src="data:image/png;base64,AAAA">')


def test_overlays_keep_the_image_size() -> None:
    image = np.full((30, 40, 3), 100, np.uint8)
    mask = np.zeros((8, 8), bool)
    mask[2:5, 3:6] = True
    out = vv.segment_overlay(image, mask)
    assert out.shape == image.shape and out[0, 0].sum() < image[0, 0].sum()  # outside dimmed
    full = vv.upsample(mask, (30, 40))
    assert full.shape == (30, 40) and full.mean() == pytest.approx(9 / 64, abs=0.02)
    sides = vv.side_overlay(image, np.stack([mask, ~mask]), np.array([0, 1]))
    assert sides.shape == image.shape
    assert sides[15, 20, 2] > sides[15, 20, 0]  # inside the first segment: blue tint (true class)


# -- pages ------------------------------------------------------------------------------------------------------


def test_connectome_page_renders_a_run(runs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(runs["out"], "pages/vcc.py", monkeypatch)
    assert not at.exception
    assert not at.error
    assert at.title[0].value == "Concept connectome"
    text = texts(at)
    assert "class **red** (0)" in text and "Streamlit cannot receive clicks" in text
    assert [s.value for s in at.subheader] == ["Connectome", "Concept", "Graph metrics per layer", "Validation"]
    [html] = iframes(at)
    assert_offline(html)
    charts = at.get("plotly_chart")
    assert len(charts) == 3  # metrics, suppression, APS vs LS
    metrics = json.loads(charts[0].proto.spec)
    assert {t["name"] for t in metrics["data"]} == {"two · red", "two · green"}
    titles = [a["text"] for a in metrics["layout"]["annotations"]]
    assert "mean edge weight (edges by source layer)" in titles
    assert "edges leaving the layer (grouped by source layer" in text
    supp = json.loads(charts[1].proto.spec)
    names = {t.get("name") for t in supp["data"]}
    assert {"isotropic random directions", "matched random (random segment sets' centroids)"} <= names
    fid = open_run(runs["vcc"]).load_json("classes/0-red/fidelity.json")
    [table] = [d.value for d in at.dataframe if "AUC matched random" in d.value.columns]
    assert list(table["layer"]) == ["block1", "block2"]
    for _, row in table.iterrows():
        auc = fid["layers"][row["layer"]]["auc"]
        for col, key in (("AUC concepts", "concept"), ("AUC isotropic random", "random"),
                         ("AUC matched random", "matched")):
            missing = auc[key] is None and (row[col] is None or np.isnan(row[col]))
            assert missing or row[col] == pytest.approx(auc[key])
    assert len(at.get("image")) >= 4  # the selected concept's exemplars over their images

    graph = open_run(runs["vcc"]).load_json("classes/0-red/graph.json")
    node = vv.concept_nodes(graph)[0]
    at.selectbox(key="vcc_node-two-0-red").set_value(node["id"]).run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["segments"] == str(node["size"])
    incoming = [d.value for d in at.dataframe if list(d.value.columns) == vv.EDGE_COLUMNS]
    assert incoming and all(set(df["source"]) == {node["id"]} or set(df["target"]) == {node["id"]}
                            for df in incoming)

    at.selectbox(key="vcc_class-two").set_value("1-green").run()
    assert not at.exception and "class **green** (1)" in texts(at)
    at.slider(key="vcc_threshold").set_value(0.5).run()
    at.toggle(key="vcc_insignificant").set_value(True).run()
    assert not at.exception
    assert_offline(iframes(at)[0])


def test_failure_debugger_page_renders_a_run(runs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(runs["out"], "pages/vcc_debug.py", monkeypatch)
    assert not at.exception
    assert not at.error
    assert at.title[0].value == "Failure debugger"
    assert [s.value for s in at.subheader] == ["Which class each layer sides with", "Top-down segments",
                                               "The two connectomes"]
    frames = iframes(at)
    assert len(frames) == 2  # the true and the predicted class's VCCs side by side
    for html in frames:
        assert_offline(html)
    debug = open_run(runs["debug"]).load_json("debug.json")
    rec = debug["images"][0]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["true class"] == rec["true_name"] and metrics["predicted"] == rec["predicted_name"]
    assert len(at.get("plotly_chart")) == 2  # top-5, shares per layer
    assert len(at.get("image")) >= 1 + len(rec["layers"])  # the image, one segmentation per layer
    if len(debug["images"]) > 1:
        at.selectbox(key="vccd_image-mistakes").set_value(debug["images"][1]["n"]).run()
        assert not at.exception


def test_failure_debugger_upload_mode_without_an_upload(runs: dict[str, Any],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(runs["out"], "pages/vcc_debug.py", monkeypatch)
    at.radio(key="vccd_source").set_value("Upload an image").run()
    assert not at.exception
    assert "one place the dashboard computes" in texts(at)
    assert at.selectbox(key="vccd_true").options == ["red (0)", "green (1)"]


def test_pages_without_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(tmp_path, "pages/vcc.py", monkeypatch)
    assert not at.exception and "python -m precompute vcc" in at.info[0].value
    at = open_page(tmp_path, "pages/vcc_debug.py", monkeypatch)
    assert not at.exception and "python -m precompute vcc-debug" in at.info[0].value
