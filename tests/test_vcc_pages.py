"""The concept connectome and failure debugger pages on tiny real runs (AppTest), and their figures: the
plotly graph self-contained (thumbnails as data: URIs, no URL to a CDN), names from a run escaped."""

from __future__ import annotations

import io
import itertools
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import viz_vcc as vv
from core.artifacts import open_run
from core.vcc.segments import upsample_mask
from tests.page_helpers import texts
from tests.test_vcc_job import make_runs

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
TIMEOUT = 90

@pytest.fixture(autouse=True)
def interactive_charts(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read the pages' plotly figures: the interactive chart mode (the default light mode's SVG
    figures are tested in tests/test_light_charts.py)."""
    monkeypatch.setenv("CONCEPT_LENS_CHARTS", "interactive")



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


def assert_graph_offline(spec: dict[str, Any]) -> None:
    """A graph_figure spec: every picture a data: URI, nothing that points at the network."""
    sources = [im["source"] for im in spec["layout"].get("images", [])]
    assert sources and all(s.startswith("data:image/") for s in sources)
    assert "http://" not in json.dumps(spec) and "https://" not in json.dumps(spec)
    assert any(t.get("name") == vv.NODE_TRACE for t in spec["data"])


def test_suppression_figure_and_table_of_a_run_without_the_matched_baseline() -> None:
    """Runs made before the matched baseline (no ``matched`` key): the isotropic one only, empty cells."""
    fid = {"scales": [0.0, 1.0], "layers": {"a": {"concept": [[1.0, 0.2]], "random": [[1.0, 0.8]],
                                                   "concept_ids": ["a:0"], "auc": {"concept": 0.6, "random": 0.9},
                                                   "falls_faster": True}}}
    fig = vv.suppression_figure(fid, ["a"])
    assert "isotropic random directions" in {t.name for t in fig.data}
    assert not any("matched" in (t.name or "") for t in fig.data)
    assert fig.layout.annotations[0].text == "a<br>AUC 0.600 / 0.900 ✓"
    table = vv.suppression_table(fid, ["a"])
    assert table.iloc[0]["AUC matched random"] is None and table.iloc[0]["below isotropic"]
    fid["layers"]["a"].update(matched=[[1.0, 0.1]], auc={"concept": 0.6, "random": 0.9, "matched": 0.55})
    fid["matched_kind"] = "segments"
    assert vv.suppression_figure(fid, ["a"]).layout.annotations[0].text == "a<br>AUC 0.600 / 0.900 ✓ / 0.550 ✗"
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


def test_overlays_keep_the_image_size() -> None:
    image = np.full((30, 40, 3), 100, np.uint8)
    mask = np.zeros((8, 8), bool)
    mask[2:5, 3:6] = True
    out = vv.segment_overlay(image, mask)
    assert out.shape == image.shape and out[0, 0].sum() < image[0, 0].sum()  # outside dimmed
    full = upsample_mask(mask, (30, 40))
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
    assert "class **red** (0)" in text and "Click a concept" in text
    assert [s.value for s in at.subheader] == ["Connectome", "Concept", "Validation"]  # the open tab only
    assert [t.label for t in at.tabs] == ["Validation", "Graph metrics", "Discovery images"]
    assert not iframes(at)  # the graph is a plotly chart now, not an HTML page in a frame
    charts = at.get("plotly_chart")
    assert len(charts) == 3  # the graph, suppression, APS vs LS
    assert_graph_offline(json.loads(charts[0].proto.spec))
    supp_spec = charts[1].proto.spec
    at.session_state["vcc_section"] = "Graph metrics"
    at.run()
    assert [s.value for s in at.subheader] == ["Connectome", "Concept", "Graph metrics per layer"]
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # the graph, the metrics
    text = texts(at)
    metrics = json.loads(charts[1].proto.spec)
    assert {t["name"] for t in metrics["data"]} == {"two · red", "two · green"}
    titles = [a["text"] for a in metrics["layout"]["annotations"]]
    assert "mean edge weight (edges by source layer)" in titles
    assert "edges leaving the layer (grouped by source layer" in text
    supp = json.loads(supp_spec)
    at.session_state["vcc_section"] = "Validation"
    at.run()
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
    assert len(at.get("image")) == 4  # the selected concept's exemplars over their images, no other picture

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
    assert_graph_offline(json.loads(at.get("plotly_chart")[0].proto.spec))
    at.session_state["vcc_section"] = "Discovery images"  # the images, a page at a time
    at.run()
    assert not at.exception and len(at.get("image")) > 4


def test_failure_debugger_page_renders_a_run(runs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(runs["out"], "pages/vcc_debug.py", monkeypatch)
    assert not at.exception
    assert not at.error
    assert at.title[0].value == "Failure debugger"
    assert [s.value for s in at.subheader] == ["Which class each layer sides with", "Top-down segments",
                                               "The two connectomes"]
    assert not iframes(at)
    charts = at.get("plotly_chart")
    assert len(charts) == 3  # top-5, shares per layer, the open tab's VCC (the true class's) at full width
    graphs = [json.loads(charts[2].proto.spec)]
    tab_key = f"vccd_graph_tab-run-{open_run(runs['debug']).load_json('debug.json')['images'][0]['n']}"
    at.session_state[tab_key] = at.tabs[1].label  # the predicted class's tab: only that graph is drawn
    at.run()
    assert not at.exception and len(at.get("plotly_chart")) == 3
    graphs.append(json.loads(at.get("plotly_chart")[2].proto.spec))
    assert graphs[0] != graphs[1]
    for spec in graphs:
        assert_graph_offline(spec)
    debug = open_run(runs["debug"]).load_json("debug.json")
    rec = debug["images"][0]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["true class"] == vv.md_text(rec["true_name"])
    assert metrics["predicted"] == vv.md_text(rec["predicted_name"])
    labels = next(t for t in graphs[0]["data"] if t.get("name") == "labels")["text"]
    assert any("×" in x for x in labels)  # the activated concepts carry their segment counts
    assert len(at.get("image")) >= 1 + len(rec["layers"])  # the image, one segmentation per layer
    if len(debug["images"]) > 1:
        at.selectbox(key="vccd_image-mistakes").set_value(debug["images"][1]["n"]).run()
        assert not at.exception


def test_failure_debugger_upload_mode_without_an_upload(runs: dict[str, Any],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(runs["out"], "pages/vcc_debug.py", monkeypatch)
    at.segmented_control(key="vccd_source").set_value("Upload an image").run()
    assert not at.exception
    assert "one place the dashboard computes" in texts(at)
    assert at.selectbox(key="vccd_true").options == ["red (0)", "green (1)"]


def test_pages_without_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(tmp_path, "pages/vcc.py", monkeypatch)
    assert not at.exception and "python -m precompute vcc" in at.info[0].value
    at = open_page(tmp_path, "pages/vcc_debug.py", monkeypatch)
    assert not at.exception and "python -m precompute vcc-debug" in at.info[0].value


# -- a graph you can click ----------------------------------------------------------------------------------------


def test_graph_figure_keeps_each_node_in_place_and_reports_clicks(runs: dict[str, Any]) -> None:
    run = open_run(runs["vcc"])
    graph = run.load_json("classes/0-red/graph.json")
    thumbs = vv.thumbs_for(graph, run.read_bytes)
    fig = vv.graph_figure(graph, thumbs)
    [node_trace] = [t for t in fig.data if t.name == vv.NODE_TRACE]
    ids = list(node_trace.customdata)
    assert sorted(ids) == sorted(n["id"] for n in graph["nodes"])
    places = dict(zip(ids, zip(node_trace.x, node_trace.y, strict=True), strict=True))
    levels = vv.level_of(graph)
    assert sorted({levels[i] for i in ids}) == list(range(len(graph["layers"]) + 1))
    row = places["class:0"][1] / len(graph["layers"])  # a row per level, the class node on top
    for i in ids:
        assert places[i][1] == pytest.approx(row * levels[i])
    # neither the threshold, the selection nor a debugged image's highlight moves a node
    other = vv.graph_figure(graph, thumbs, threshold=0.9, show_insignificant=True, selected=ids[0],
                            highlight={ids[1]: 2}, path_edges=set())
    [moved] = [t for t in other.data if t.name == vv.NODE_TRACE]
    assert list(moved.x) == list(node_trace.x) and list(moved.y) == list(node_trace.y)
    assert fig.layout.uirevision == other.layout.uirevision  # zoom survives reruns
    assert {im.source for im in fig.layout.images} <= set(thumbs.values())
    # a click event of st.plotly_chart names the node; anything else (an edge's midpoint) is ignored
    assert vv.clicked_node({"points": [{"customdata": ids[2], "curve_number": 5}]}, ids) == ids[2]
    assert vv.clicked_node({"points": [{"customdata": [ids[3]]}]}, ids) == ids[3]
    assert vv.clicked_node({"points": [{"x": 1.0, "y": 2.0}]}, ids) is None
    assert vv.clicked_node(None, ids) is None


HOSTILE_NAMES = ["<img src=x onerror=alert(1)>", "</script><script>alert(1)</script>", "![x](http://evil/x.png)",
                 "%{customdata} <a href='http://evil/'>x</a>"]


def hostile_graph() -> dict[str, Any]:
    layers = HOSTILE_NAMES[:3]
    nodes = [{"id": f"{layer}:{c}", "layer": layer, "index": c, "size": 5, "members": [], "exemplars": [],
              "kind": "concept"} for layer in layers for c in range(2)]
    nodes.append({"id": "class:1", "layer": "class", "index": 1, "size": 3, "kind": "class",
                  "label": HOSTILE_NAMES[3]})
    edges = [{"source": f"{a}:0", "target": f"{b}:1", "weight": 0.6, "p_value": 0.01, "significant": True}
             for a, b in itertools.pairwise(layers)]
    edges.append({"source": f"{layers[-1]}:1", "target": "class:1", "weight": 0.7, "p_value": 0.01,
                  "significant": True})
    return {"layers": layers, "nodes": nodes, "edges": edges}


def test_names_from_a_run_are_escaped_in_every_figure_and_page() -> None:
    graph = hostile_graph()
    spec = vv.graph_figure(graph).to_json()
    for name in HOSTILE_NAMES:
        assert name not in spec and json.dumps(name)[1:-1] not in spec
    assert "%{customdata}" not in spec.replace("%{customdata[", "")  # no template field from the run
    fid = {"scales": [0.0, 1.0], "layers": {HOSTILE_NAMES[0]: {"concept": [[1.0, 0.5]], "random": [[1.0, 0.9]],
                                                               "concept_ids": [HOSTILE_NAMES[1]],
                                                               "auc": {"concept": 0.7, "random": 0.9}}},
           "aps": {f"{HOSTILE_NAMES[2]}:0": 0.5}, "ls": {f"{HOSTILE_NAMES[2]}:0": 1.0}}
    rows = [{"layer": HOSTILE_NAMES[0], "share_true": 0.5, "share_predicted": 0.5, "n_true": 1, "n_predicted": 1,
             "n_segments": 2, "area_true": 0.5, "area_predicted": 0.5}]
    for fig in (vv.suppression_figure(fid), vv.aps_ls_figure(fid), vv.shares_figure(rows, *HOSTILE_NAMES[:2]),
                vv.metrics_figure({HOSTILE_NAMES[3]: [{"layer": HOSTILE_NAMES[0], "n_concepts": 1}]})):
        text = fig.to_json()
        assert "<img" not in text and "<a href" not in text and "<script" not in text
    assert "\\!\\[x\\]\\(http\\:" in vv.md_text(HOSTILE_NAMES[2])
    assert vv.md_code("a`b") == "`a'b`"


def test_upload_errors_read_as_words() -> None:
    from PIL import Image

    for data in (b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 20):
        with pytest.raises(Exception) as caught, Image.open(io.BytesIO(data)) as im:
            im.convert("RGB")
        text = vv.upload_error("holiday.png", caught.value)
        assert text.startswith("holiday.png ") and "BytesIO" not in text and "0x" not in text
        assert "upload" in text
    bomb = Image.DecompressionBombError("Image size (1 pixels) exceeds limit")
    assert "too large" in vv.upload_error("big.png", bomb)


def test_hostile_runs_render_as_text_on_both_pages(runs: dict[str, Any], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from pages.components.run_warnings import warning_text
    from tests.hostile import EVIL, WARNINGS, hostile_copy

    root = tmp_path / "root"
    hostile_copy(Path(runs["vcc"]), root / "vcc" / Path(runs["vcc"]).name)
    hostile_copy(Path(runs["debug"]), root / "vcc-debug" / Path(runs["debug"]).name)
    for page in ("pages/vcc.py", "pages/vcc_debug.py"):
        at = open_page(root, page, monkeypatch)
        assert not at.exception, page
        shown = [w.value for w in at.warning]
        assert [warning_text(w) for w in WARNINGS] == [x for x in shown if x in map(warning_text, WARNINGS)]
        assert len([x for x in shown if x in map(warning_text, WARNINGS)]) == 2  # run-level on top, layer at graph
        md = [e.value for kind in ("markdown", "caption", "warning", "info", "error", "metric")
              for e in at.get(kind) if isinstance(getattr(e, "value", None), str)]
        md += [m.label for m in at.metric]
        for text in md:  # the run's markup only in escaped form (after a backslash) or in a code span
            bare = re.sub(r"`[^`]*`", "", text)
            assert not re.search(r"(?<!\\)(!\[|\]\(|<img|<script|</script)", bare), (page, text)
        assert any(f"\\]\\(http\\://{EVIL}" in text for text in md)  # shown, as text
        for chart in at.get("plotly_chart"):
            assert "<img" not in chart.proto.spec and "<script" not in chart.proto.spec


def test_warnings_go_beside_their_figure() -> None:
    from pages.components.run_warnings import warning_text, warnings_at

    ws = [{"code": "a", "message": "run", "layer": None, "figure": None},
          {"code": "b", "message": "layer only", "layer": "blocks.3", "figure": None},
          {"code": "c", "message": "graph", "layer": None, "figure": "graph"},
          {"code": "d", "message": "unknown figure", "layer": "x", "figure": "histogram"}]
    places = {"graph": ("graph",), "metrics": ("metrics",)}
    assert [w["code"] for w in warnings_at(ws, "top", places, "graph")] == ["a", "d"]
    assert [w["code"] for w in warnings_at(ws, "graph", places, "graph")] == ["b", "c"]
    assert warnings_at(ws, "metrics", places, "graph") == []
    assert warning_text({"message": "too few *images*", "layer": "conv_head", "setting": "--n-images"}) == \
        "**conv\\_head**: too few \\*images\\* (setting: `--n-images`)"


def test_undecodable_images_of_a_run_are_errors_not_exceptions(runs: dict[str, Any], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Every picture of a run replaced by garbage whose hash is in the manifest: the pages name the file."""
    import shutil

    from tests.hostile import rehash

    root = tmp_path / "root"
    for kind, src in (("vcc", runs["vcc"]), ("vcc-debug", runs["debug"])):
        dest = root / kind / Path(src).name
        shutil.copytree(src, dest)
        for p in [*dest.rglob("*.png"), *dest.rglob("*.webp"), *dest.rglob("*.jpg")]:
            p.write_bytes(b"not an image at all")
        rehash(dest)
    for page in ("pages/vcc.py", "pages/vcc_debug.py"):
        at = open_page(root, page, monkeypatch)
        assert not at.exception, page
        if page == "pages/vcc.py":
            at.session_state["vcc_section"] = "Discovery images"
            at.run()
            assert not at.exception
            shown = " ".join(str(w.value) for w in [*at.warning, *at.error])
            assert "cannot be decoded" in shown or "not an image" in shown or "unreadable" in shown, shown
