"""The shipped demo runs: what the issues require of them on the real models, and that every page
renders each of them (AppTest). Skipped where a demo is not shipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import core.viz_vcc as vv

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "assets" / "demo"
APP = str(REPO / "app.py")
TIMEOUT = 120

@pytest.fixture(autouse=True)
def interactive_charts(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read the pages' plotly figures: the interactive chart mode (the default light mode's SVG
    figures are tested in tests/test_light_charts.py)."""
    monkeypatch.setenv("CONCEPT_LENS_CHARTS", "interactive")



def runs(kind: str) -> list[Path]:
    return sorted(p.parent for p in (DEMO / kind).glob("*/manifest.json"))


def open_run_page(run: Path, page: str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("CONCEPT_LENS_ARTIFACTS", str(DEMO))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.selectbox(key="run_path").set_value(str(run)).run()
    return at.switch_page(page).run()


# -- VTCD -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", runs("vtcd"), ids=lambda p: p.name)
def test_vtcd_demo_removing_important_concepts_first_hurts_most(run: Path) -> None:
    auc = json.loads((run / "attribution.json").read_text())["auc"]
    assert auc["positive"] < auc["random"] < auc["negative"]


# The one shipped run whose best concept does not overlap the moving object more than the random-crop baseline's
# (0.0224 against 0.0236: the plain-tubelet motion model on motion clips; README, issue 16). Named, not skipped:
# if a rerun beats the baseline, this test says so.
BELOW_BASELINE = {"tubelet_vit-motion-synthetic"}


@pytest.mark.parametrize("run", [r for r in runs("vtcd") if (r / "ground_truth.json").is_file()],
                         ids=lambda p: p.name)
def test_vtcd_demo_against_the_random_crop_baseline(run: Path) -> None:
    gt = json.loads((run / "ground_truth.json").read_text())
    beats = gt["best"]["iou"] > gt["baseline"]["best_iou"]
    assert beats is (run.name not in BELOW_BASELINE)


@pytest.mark.parametrize("run", runs("vtcd"), ids=lambda p: p.name)
def test_vtcd_demo_follows_the_released_code_with_intervals_and_diagnostics(run: Path) -> None:
    """Made with the released code's rules and the dissertation's 4000 masks, with every importance's
    bootstrap interval and the attention diagnostics of each block."""
    cfg = json.loads((run / "manifest.json").read_text())["config"]["vtcd"]
    assert (cfg["assignment"], cfg["elbow_rule"], cfg["cnmf_max_iter"], cfg["n_masks"]) == ("g", "stop", 10000, 4000)
    doc = json.loads((run / "concepts.json").read_text())
    for c in doc["concepts"]:
        lo, hi = c["importance_ci"]
        assert lo <= c["importance"] <= hi
    diag = json.loads((run / "diagnostics.json").read_text())
    assert [b["layer"] for b in diag["blocks"]] == doc["layers"]
    assert all(b["keys_removed_abs"] is not None for b in diag["blocks"])


@pytest.mark.parametrize("run", runs("rosetta"), ids=lambda p: p.name)
def test_rosetta_demo_averages_over_all_clips(run: Path) -> None:
    assert json.loads((run / "rosetta.json").read_text())["average"] == "all"


@pytest.mark.parametrize("run", runs("vtcd") + runs("rosetta"), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_concept_tubelets_page_renders_the_demo(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_run_page(run, "pages/vtcd.py", monkeypatch)
    assert not at.exception and not at.error
    assert at.get("iframe")  # the synced player
    if (run / "ground_truth.npz").is_file():
        assert at.toggle(key="vt_gt").value


# -- VCC ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", runs("vcc"), ids=lambda p: p.name)
def test_vcc_demo_concept_suppression_falls_faster_than_random(run: Path) -> None:
    for entry in json.loads((run / "classes.json").read_text()):
        fid = json.loads((run / entry["dir"] / "fidelity.json").read_text())
        for layer, d in fid["layers"].items():
            if d["concept_ids"]:  # a layer whose clusters were all pruned has nothing to suppress
                assert d["auc"]["concept"] < d["auc"]["random"], (entry["class_name"], layer)


@pytest.mark.parametrize("run", runs("vcc"), ids=lambda p: p.name)
def test_vcc_demo_records_the_matched_baseline_and_the_commonality_filter(run: Path) -> None:
    """The demo is made with the released code's defaults: both suppression baselines are stored (whichever
    wins), and so is how many clusters each pruning rule removed per layer."""
    for entry in json.loads((run / "classes.json").read_text()):
        fid = json.loads((run / entry["dir"] / "fidelity.json").read_text())
        graph = json.loads((run / entry["dir"] / "graph.json").read_text())
        assert fid["matched_kind"] == "segments" and graph["meta"]["config"]["cav_method"] == "svm"
        for d in fid["layers"].values():
            has = bool(d["concept_ids"])
            assert (d["auc"]["matched"] is not None) == has and len(d["matched"]) == (10 if has else 0)
        assert set(graph["meta"]["pruned_by_commonality"]) == set(graph["layers"])
        assert set(graph["meta"]["pruned_by_size"]) == set(graph["layers"])


@pytest.mark.parametrize("run", runs("vcc"), ids=lambda p: p.name)
def test_connectome_page_renders_the_demo(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_run_page(run, "pages/vcc.py", monkeypatch)
    assert not at.exception and not at.error
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(charts) >= 2  # the clickable graph and the open validation tab's figures
    nodes = [t for t in charts[0]["data"] if t.get("name") == vv.NODE_TRACE]
    assert nodes and len(nodes[0]["x"]) > 1  # the graph has its concept nodes


@pytest.mark.parametrize("run", runs("vcc-debug"), ids=lambda p: p.name)
def test_failure_debugger_renders_the_demo_with_both_classes(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    debug = json.loads((run / "debug.json").read_text())
    rocket = next(r for r in debug["images"] if r["source"] == "skimage.data.rocket")
    assert rocket["predicted_name"].startswith("drilling platform") and rocket["vcc_predicted"] is not None
    assert 0 < rocket["share_true"] < 1  # segments side with each class
    at = open_run_page(run, "pages/vcc_debug.py", monkeypatch)
    assert not at.exception and not at.error
    assert len(at.get("plotly_chart")) >= 2


def test_every_demo_json_file_is_strict_json() -> None:
    """No NaN or Infinity tokens in any shipped run: browsers and other tools reject them."""
    def refuse(token: str) -> None:
        raise AssertionError(f"non-JSON constant {token}")

    for p in DEMO.rglob("*.json"):
        if not any(part.startswith(".partial") for part in p.parts):
            json.loads(p.read_text(), parse_constant=refuse)
