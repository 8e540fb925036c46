"""The concept tubelets page on real (tiny) vtcd and rosetta runs, and its pure builders: the synced player
is one self-contained HTML document with no external URL."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from streamlit.testing.v1 import AppTest  # noqa: E402

from core import viz_vtcd as vv  # noqa: E402
from core.vtcd import media as vm  # noqa: E402
from precompute import cli  # noqa: E402
from tests.page_helpers import texts  # noqa: E402
from tests.test_vtcd_job import make_tiny_ckpt, vtcd_args  # noqa: E402

APP = str(REPO / "app.py")
PAGE = "pages/vtcd.py"
TIMEOUT = 60
URL = re.compile(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", re.IGNORECASE)

@pytest.fixture(autouse=True)
def interactive_charts(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read the pages' plotly figures: the interactive chart mode (the default light mode's SVG
    figures are tested in tests/test_light_charts.py)."""
    monkeypatch.setenv("CONCEPT_LENS_CHARTS", "interactive")



@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three tiny vtcd runs (``a`` with ground truth, ``b``, ``c`` without head importance) and a rosetta run
    ``twins`` across ``a`` and ``b``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = tmp_path_factory.mktemp("vtcd-page")
        ckpt = make_tiny_ckpt(base / "tiny-vit")
        out = base / "runs"
        assert cli.main(vtcd_args(ckpt, out, "a", "--ground-truth")) == 0
        assert cli.main(vtcd_args(ckpt, out, "b", "--media-videos", "1")) == 0
        assert cli.main(vtcd_args(ckpt, out, "c", "--media-videos", "1", "--head-masks", "0")) == 0
        assert cli.main(["rosetta", "--runs", "a", "b", "--out", str(out), "--run-id", "twins"]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def open_page(root: Path, monkeypatch: pytest.MonkeyPatch, run: str | None = None) -> AppTest:
    monkeypatch.setenv("CONCEPT_LENS_ARTIFACTS", str(root))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if run is not None:
        at.selectbox(key="run_path").set_value(str(root / run)).run()
    return at.switch_page(PAGE).run()


def players(at: AppTest) -> list[str]:
    """The HTML documents of the page's players."""
    return [e.proto.srcdoc for e in at.get("iframe")]


def tile_count(doc: str) -> int:
    return doc.count('class="tile"')


def test_page_renders_a_vtcd_run(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(root, monkeypatch, "vtcd/a")
    assert not at.exception and not at.error
    assert at.title[0].value == "Concept tubelets"
    assert [s.value for s in at.subheader] == ["Concept browser", "Players",
                                               "Importance, its uncertainty, and what each block does"]
    assert [t.label for t in at.tabs] == ["Importance and uncertainty", "Validation", "Ground truth"]
    doc = json.loads((root / "vtcd" / "a" / "concepts.json").read_text())
    text = texts(at)
    assert f"{len(doc['concepts'])} concepts in 4 heads of 2 layers" in text and "3 clips" in text
    # the browser starts on the most important head and lists its concepts, most important first
    top = min(doc["units"], key=lambda u: u["rank"])
    assert (at.selectbox(key="vt_layer").value, at.selectbox(key="vt_head").value) == (top["layer"], top["head"])
    table = at.dataframe[0].value
    mine = [c for c in doc["concepts"] if c["unit"] == top["index"]]
    assert list(table["concept"]) == [c["id"] for c in sorted(mine, key=lambda c: -c["importance"])]
    # grid, top concepts with intervals, importance by layer beside the attention diagnostics (the open tab)
    assert len(at.get("plotly_chart")) == 3
    diag = json.loads((root / "vtcd" / "a" / "diagnostics.json").read_text())
    shown = at.dataframe[1].value
    assert list(shown["block"]) == ["blocks.0", "blocks.1"]
    np.testing.assert_allclose(shown["entropy"], [b["entropy"] for b in diag["blocks"]])
    assert "bootstrap" in text and "Spearman" in text
    assert {"CI low", "CI high", "released"} <= set(at.dataframe[0].value.columns)
    html = players(at)
    assert len(html) == 1 and not URL.search(html[0])
    concept = doc["concepts"][[c["id"] for c in doc["concepts"]].index(at.selectbox(key="vt_concept").value)]
    assert tile_count(html[0]) == min(4, len(concept["videos"]))
    assert '"state": "' + str(root / "vtcd" / "a") in html[0] and f"|concept|{concept['id']}" in html[0]
    # the validation tab: attribution, pruning, head heatmap (only the open tab is drawn)
    at.session_state["vt_section"] = "Validation"
    at.run()
    assert not at.exception
    assert [s.value for s in at.subheader][-1] == "Validation" and len(at.get("plotly_chart")) == 4
    assert f"{concept['layer']} · head {concept['head']} · concept {concept['concept']}" in html[0]
    # all heads, filtered by layer: the filters live in a popover whose widgets exist only while it is open
    assert not [r for r in at.radio if r.key == "vt_scope"]
    at.session_state["vt_filters"] = True
    at.run()
    at.radio(key="vt_scope").set_value("all heads").run()
    at.multiselect(key="vt_layers").set_value(["blocks.1"]).run()
    assert set(at.dataframe[0].value["layer"]) == {"blocks.1"}
    at.session_state["vt_filters"] = False  # closed: the choice stays, and the popover's label says it
    at.run()
    assert not at.exception and not [r for r in at.radio if r.key == "vt_scope"]
    assert set(at.dataframe[0].value["layer"]) == {"blocks.1"}
    assert "concepts of all heads of 1 of 2 layers, by importance" in texts(at)  # the table's caption says so


def test_ground_truth_outline_in_the_players(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(root, monkeypatch, "vtcd/a")
    assert at.toggle(key="vt_gt").value  # run a has object masks: outlined by default
    with_gt = players(at)[0]
    at.toggle(key="vt_gt").set_value(False).run()
    assert not at.exception and players(at)[0] != with_gt  # the same tiles, without the cyan outline
    gt = json.loads((root / "vtcd" / "a" / "ground_truth.json").read_text())
    at.session_state["vt_section"] = "Ground truth"
    at.run()
    at.button(key="vt_show_best").click().run()
    assert not at.exception
    assert at.selectbox(key="vt_concept").value == gt["best"]["id"] and at.toggle(key="vt_gt").value
    b = open_page(root, monkeypatch, "vtcd/b")  # no ground truth: no toggle
    assert not b.exception and not [t for t in b.toggle if t.key == "vt_gt"]


def test_other_objects_of_the_ground_truth_are_shown(root: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A run scored against another object too (the occlusion task's occluder) names its best concept and
    IoU against the baseline, and the table gets its columns; the object's name is a run's text: escaped."""
    import shutil

    from tests.hostile import rehash

    copy = tmp_path / "root"
    shutil.copytree(root / "vtcd" / "a", copy / "vtcd" / "a")
    path = copy / "vtcd" / "a" / "ground_truth.json"
    gt = json.loads(path.read_text())
    name = "occ*luder"
    gt["others"] = {name: {"best": {**gt["best"], "iou": 0.4321}, "baseline": {"best_iou": 0.1234},
                           "layers": [{**r, "iou": 0.4321, "baseline_iou": 0.1234} for r in gt["layers"]]}}
    path.write_text(json.dumps(gt))
    rehash(copy / "vtcd" / "a")
    at = open_page(copy, monkeypatch, "vtcd/a")
    at.session_state["vt_section"] = "Ground truth"
    at.run()
    assert not at.exception
    line = next(m.value for m in at.markdown if "0.432" in m.value)
    assert line.startswith("**occ\\*luder**") and "0.123 for the random-crop baseline" in line
    table = at.dataframe[-1].value
    assert list(table.columns[-3:]) == [f"best concept ({name})", f"IoU ({name})", f"baseline IoU ({name})"]
    assert (table[f"IoU ({name})"] == 0.4321).all()


def test_draw_outline_marks_only_the_border_of_the_mask() -> None:
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    mask = np.zeros((1, 4, 4), bool)
    mask[0, 1:3, 1:3] = True  # pixels 4..11 of the 16x16 frames, in both frames (nearest in time)
    out = vm.draw_outline(frames, mask, line=1)
    painted = (out == np.array(vm.GROUND_TRUTH, np.uint8)).all(-1)
    expected = np.zeros((16, 16), bool)
    expected[4:12, 4:12] = True
    expected[5:11, 5:11] = False
    assert (painted == expected[None]).all()
    assert (frames == 0).all()  # the input is left alone


def test_one_video_several_concepts(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(root, monkeypatch, "vtcd/a")
    at.segmented_control(key="vt_mode").set_value("video").run()
    at.selectbox(key="vt_video").set_value(1).run()
    assert not at.exception
    doc = json.loads((root / "vtcd" / "a" / "concepts.json").read_text())
    layer, head = at.selectbox(key="vt_layer").value, at.selectbox(key="vt_head").value
    present = [c for c in doc["concepts"] if c["layer"] == layer and c["head"] == head
               and any(r["video"] == 1 for r in c["videos"])]
    html = players(at)[0]
    assert tile_count(html) == 1 + len(present) and "appearance-test-001 (the clip)" in html
    at.segmented_control(key="vt_vscope").set_value("top").run()
    assert tile_count(players(at)[0]) > 1


def test_a_run_without_head_importance(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run made with --head-masks 0 (every unit's importance null): the page says so where head importance
    would be, and colours the grid by each head's best concept instead."""
    doc = json.loads((root / "vtcd" / "c" / "concepts.json").read_text())
    assert all(u["importance"] is None and u["rank"] is None for u in doc["units"])
    at = open_page(root, monkeypatch, "vtcd/c")
    assert not at.exception and not at.error
    note = "No head importance was computed for this run (it was made with `--head-masks 0`)."
    assert any(note in c.value for c in at.caption)
    grid = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert grid["layout"]["title"]["text"] == vv.COLOR_BY["top"][0]
    at.session_state["vt_section"] = "Validation"
    at.run()
    assert not at.exception
    assert note in [c.value for c in at.caption]  # in place of the head heatmap
    assert len(at.get("plotly_chart")) == 2  # the grid and the attribution curves: no heatmap, no pruning
    # a manifest whose settings cannot be read: the page still shows the run, without naming the cause
    import shutil

    copy = tmp_path / "root" / "vtcd" / "c"
    shutil.copytree(root / "vtcd" / "c", copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["config"]["vtcd"] = ["not", "settings"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    at = open_page(tmp_path / "root", monkeypatch)
    assert not at.exception and not at.error
    assert any("No head importance in this run: it is undefined (NaN) for every head." in c.value
               for c in at.caption)


def test_null_and_nan_importances(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run where one head's importance is NaN (as a hand-made or older run may write it) and another's null,
    and a concept's importance NaN: no exception, the head's caption says its importance is undefined."""
    import shutil

    from tests.hostile import rehash

    copy = tmp_path / "root" / "vtcd" / "a"
    shutil.copytree(root / "vtcd" / "a", copy)
    doc = json.loads((copy / "concepts.json").read_text())
    top = min(doc["units"], key=lambda u: u["rank"])  # the head the page opens on
    top["importance"] = float("nan")
    next(u for u in doc["units"] if u is not top)["importance"] = None
    first = next(c for c in doc["concepts"] if c["unit"] == top["index"])
    first["importance"] = float("nan")
    (copy / "concepts.json").write_text(json.dumps(doc))  # NaN written as the bare word NaN
    rehash(copy)
    at = open_page(tmp_path / "root", monkeypatch)
    assert not at.exception and not at.error
    head = next(c.value for c in at.caption if c.value.startswith(f"**{top['layer']} · head {top['head']}**"))
    assert "head importance undefined for this head" in head and "nan" not in head
    assert list(at.dataframe[0].value["concept"])[-1] == first["id"]  # an undefined importance sorts last
    at.selectbox(key="vt_concept").set_value(first["id"]).run()
    assert not at.exception and "importance —" in players(at)[0]
    at.session_state["vt_section"] = "Validation"
    at.run()
    assert not at.exception and len(at.get("plotly_chart")) == 4  # the other heads still have a heatmap


def test_page_renders_a_rosetta_run(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(root, monkeypatch, "rosetta/twins")
    assert not at.exception and not at.error
    doc = json.loads((root / "rosetta" / "twins" / "rosetta.json").read_text())
    table = at.dataframe[0].value
    assert len(table) == len(doc["tuples"]) and list(table.columns[:3]) == ["tuple", "d", "R"]
    html = players(at)
    assert len(html) == 1 and tile_count(html[0]) == 2 and not URL.search(html[0])
    assert "tiny-vit (b)" in html[0]


def test_page_without_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(tmp_path, monkeypatch)
    assert not at.exception
    assert "No `vtcd` or `rosetta` runs" in at.info[0].value


# -- pure builders ---------------------------------------------------------------------------------------------


def test_player_html_is_self_contained_and_synced() -> None:
    rng = np.random.default_rng(0)
    tiles = [vv.make_tile(rng.integers(0, 255, (t, 16, 16, 3), dtype=np.uint8), [f"tile {t}", "video x", "imp"])
             for t in (8, 16)]
    doc = vv.player_html(tiles, fps=8, columns=2)
    assert not URL.search(doc)  # no CDN, no external fetch: works offline
    assert "<link" not in doc and "src=" not in doc.replace("<script>", "")
    assert doc.count("data:image/webp;base64,") == 2
    for control in ("id='play'", "id='slider'", "id='back'", "id='fwd'", "id='loop'", "id='speed'"):
        assert control in doc
    raw = re.search(r"<script id='cfg' type='application/json'>(.*?)</script>", doc).group(1)
    assert "</" not in raw  # the settings cannot close their script element early
    cfg = json.loads(raw)
    assert cfg["frames"] == [8, 16] and cfg["fps"] == 8.0
    assert cfg["state"] == ""  # no key: nothing kept in the browser
    hostile = "run</script><script>alert(1)</script>|concept|<!--x"
    doc = vv.player_html(tiles, state=hostile)
    raw = re.search(r"<script id='cfg' type='application/json'>(.*?)</script>", doc).group(1)
    assert "<" not in raw and json.loads(raw)["state"] == hostile  # kept whole, cannot end its element
    assert "sessionStorage" in doc and doc.count("</script>") == 2
    assert vv.player_height(tiles, 2) > 176


def test_highlight_dims_outside_and_outlines_the_support() -> None:
    frames = np.full((2, 8, 8, 3), 200, np.uint8)
    support = np.zeros((2, 4, 4), bool)
    support[:, 1:3, 1:3] = True  # the centre 4x4 pixels of the clip
    out = vm.highlight(frames, support, factor=2, dim=0.3, line=1)
    assert out.shape == (2, 16, 16, 3)
    assert (out[:, 0, 0] == 60).all()  # dimmed to 30%
    assert (out[:, 7, 7] == 200).all()  # inside, untouched
    assert tuple(out[0, 4, 8]) == vm.HIGHLIGHT  # on the border


def test_filters_and_grid_click() -> None:
    concepts = [{"id": f"blocks.{i // 2}/h{i % 2}/c0", "layer": f"blocks.{i // 2}", "head": i % 2,
                 "importance": imp, "coverage": 0.1 * i, "n_videos": i} for i, imp in enumerate([0.1, None, 0.3, -0.2])]
    assert [c["id"] for c in vv.filter_concepts(concepts)] == ["blocks.1/h0/c0", "blocks.0/h0/c0", "blocks.1/h1/c0",
                                                               "blocks.0/h1/c0"]
    nan = {"id": "blocks.2/h0/c0", "layer": "blocks.2", "head": 0, "importance": float("nan")}
    ranked = vv.filter_concepts([nan, *concepts])
    assert [c["id"] for c in ranked][:3] == ["blocks.1/h0/c0", "blocks.0/h0/c0", "blocks.1/h1/c0"]
    assert {c["id"] for c in ranked[3:]} == {"blocks.2/h0/c0", "blocks.0/h1/c0"}  # NaN sorts with null, last
    assert [vv.finite(x) for x in (1, 0.0, None, float("nan"), float("inf"), "1", True)] == [1.0, 0.0] + [None] * 5
    assert [c["head"] for c in vv.filter_concepts(concepts, layers=["blocks.1"], min_importance=0.0)] == [0]
    assert vv.grid_point({"customdata": ["blocks.1", 2], "x": 2, "y": "blocks.1"}) == ("blocks.1", 2)
    assert vv.grid_point({"x": 1, "y": "blocks.0"}) == ("blocks.0", 1)


def test_layer_figure_and_the_diagnostics_sentence() -> None:
    doc = {"layers": ["blocks.0", "blocks.1"],
           "concepts": [{"id": "blocks.0/h0/c0", "layer": "blocks.0", "importance": 0.3, "importance_ci": [0.2, 0.4]},
                        {"id": "blocks.1/h0/c0", "layer": "blocks.1", "importance": 0.01, "importance_ci": None}]}
    diag = {"blocks": [{"layer": "blocks.0", "entropy": 0.6, "branch_abs": 0.5, "keys_zero_abs": 0.1,
                        "keys_removed_abs": 0.01},
                       {"layer": "blocks.1", "entropy": 0.95, "branch_abs": 0.01, "keys_zero_abs": 0.0,
                        "keys_removed_abs": None}]}
    fig = vv.layer_figure(doc, diag)
    names = [t.name for t in fig.data]
    assert names[:2] == ["concepts", "best concept of the layer"] and len(names) == 6
    assert list(fig.data[1].error_x.array) == pytest.approx([0.1, 0.0])  # the second layer has no interval
    removed = next(t for t in fig.data if "-inf" in t.name)
    assert list(removed.y) == ["blocks.0"]  # None is not drawn
    assert len(vv.layer_figure(doc, None).data) == 2  # a CNN run: importances only
    sentence = vv.diagnostics_summary(diag)
    assert sentence.startswith("Removing the whole attention branch of blocks.1 (attention entropy 0.95-0.95")
    assert vv.diagnostics_summary({"blocks": diag["blocks"][:1]}) is None
    hostile = {"blocks": [{**diag["blocks"][1], "layer": "![x](http://evil/x.png)"}]}
    assert "\\!\\[x\\]\\(http://evil/x.png\\)" in vv.diagnostics_summary(hostile)


def test_run_warnings_are_shown_beside_their_figure(root: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's warnings: run-level ones at the top, a layer's beside the concept browser, a figure's in its
    section; every part from the run escaped."""
    import shutil

    copy = tmp_path / "root" / "vtcd" / "a"
    shutil.copytree(root / "vtcd" / "a", copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["warnings"] = [
        {"code": "few", "message": "only 3 clips: ![x](http://evil.example/x.png)", "setting": "--videos",
         "layer": None, "figure": None},
        {"code": "flat", "message": "every concept of this layer is flat", "setting": None, "layer": "blocks.1",
         "figure": None},
        {"code": "ci", "message": "intervals are wide", "setting": "--bootstrap", "layer": None,
         "figure": "importance"}]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    at = open_page(tmp_path / "root", monkeypatch)
    assert not at.exception
    warned = [w.value for w in at.warning]
    top = "only 3 clips\\: \\!\\[x\\]\\(http\\://evil.example/x.png\\) (setting: `--videos`)"
    assert warned == [top, "**blocks.1**: every concept of this layer is flat", "intervals are wide (setting: "
                      "`--bootstrap`)"]
    # in page order: above the browser, in the browser, in the importance tab (after the players)
    def walk(node):  # every element of the page in order
        yield node
        for child in getattr(node, "children", {}).values():
            yield from walk(child)

    marks = (*warned, "Concept browser", "Players", "Importance, its uncertainty, and what each block does")
    order = [e.value for e in walk(at.main) if isinstance(getattr(e, "value", None), str) and e.value in marks]
    assert order == [top, "Concept browser", warned[1], "Players",
                     "Importance, its uncertainty, and what each block does", warned[2]]
