"""Reports (core.report, `precompute report`): each demo run kind builds with its figures, plotly.js is
inlined once, runs of one kind share axes side by side, every string of a hostile run is escaped, and the
file opened in Chromium makes no request to any host and logs no error."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

import core
from core.artifacts import open_run
from core.report import ReportConfig, build_report
from core.report.axes import share_axes
from tests.hostile import EVIL, HOSTILE, hostile_copy

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"
SMALL = ReportConfig(max_clips=2, max_exemplars=1, max_examples=1, max_images=1, max_classes=1, max_rows=5)
RUNS = {
    "static-dynamic": "static-dynamic/zoo-synthetic",
    "training": "static-dynamic/r3d-motion-training",
    "vtcd": "vtcd/vit-motion-synthetic",
    "rosetta": "rosetta/vit-motion-vs-appearance",
    "vcc": "vcc/efficientnet_lite0-photos",
    "vcc-debug": "vcc-debug/efficientnet_lite0-mistakes",
    "predictions": "predictions/efficientnet_lite0-photos",
}
# Figures (``data-figure`` slots) each report must hold; a trailing ":" matches any slot with that prefix.
EXPECTED = {
    "static-dynamic": ["unit-histogram", "layer-scores", "removal:"],
    "training": ["unit-histogram", "layer-scores", "dynamics"],
    "vtcd": ["grid", "top-concepts", "layers", "heads", "attribution", "pruning"],
    "rosetta": [],
    "vcc": ["metrics", "graph:", "suppression:", "aps:"],
    "vcc-debug": ["shares:", "graph:"],
    "predictions": [],
}
VIDEOS = {"static-dynamic": 1, "vtcd": 2, "rosetta": 2}


def slots(text: str) -> list[str]:
    return re.findall(r'<div class="plot" id="f\d+" data-figure="([^"]*)"', text)


def figures(text: str) -> dict[str, dict]:
    """Element id -> the plotly figure JSON the report holds for it."""
    return {m[1]: json.loads(m[2]) for m in re.finditer(
        r'<script type="application/json" class="cl-fig" data-target="(f\d+)"[^>]*>(.*?)</script>', text, re.S)}


@pytest.fixture(scope="module")
def reports() -> dict[str, str]:
    return {k: build_report([open_run(DEMO / v)], SMALL) for k, v in RUNS.items()}


@pytest.mark.parametrize("kind", list(RUNS))
def test_each_demo_kind_builds_with_its_figures(reports: dict[str, str], kind: str) -> None:
    text = reports[kind]
    run = open_run(DEMO / RUNS[kind])
    found = slots(text)
    for want in EXPECTED[kind]:
        assert any(s == want or (want.endswith(":") and s.startswith(want)) for s in found), (want, found)
    assert len(figures(text)) == len(found)  # every placeholder has its figure, and no figure is orphaned
    assert text.count('id="cl-plotly"') == 1 and text.count("<script src") == 0
    assert not re.search(r'(src|href)="(https?:)?//', text)  # nothing to fetch
    assert text.count("<video") >= VIDEOS.get(kind, 0)
    assert text.count("<video") <= SMALL.max_clips * 5  # a Rosetta row holds a clip per model
    assert f"Concept Lens {core.__version__}" in text and run.run_id in text
    assert ("class='cap'" in text and "Settings" in text) or kind == "predictions"
    if kind == "predictions":
        assert "not an analysis" in text


def test_the_concept_graph_is_clickable_and_capped(reports: dict[str, str]) -> None:
    text = reports["vcc"]
    graph = next(fid for fid, s in re.findall(r'id="(f\d+)" data-figure="([^"]*)"', text) if s.startswith("graph:"))
    nodes = json.loads(re.search(rf'<script type="application/json" id="{graph}-nodes">(.*?)</script>', text)[1])
    assert len(nodes) > 5 and all(f'id="{pid}" data-graph="{graph}"' in text for pid in nodes.values())
    panels = re.findall(rf'<div class="panel" id="p\d+" data-graph="{graph}">.*?</ul></div>', text, re.S)
    assert len(panels) == len(nodes) and all(p.count("<img") <= SMALL.max_exemplars for p in panels)
    assert sum(p.count("<img") for p in panels) > 0
    assert "data:image/webp;base64," in figures(text)[graph]["layout"]["images"][0]["source"]


def test_caps_bound_the_size() -> None:
    run = open_run(DEMO / RUNS["vtcd"])
    small = build_report([run], ReportConfig(max_clips=0))
    more = build_report([run], ReportConfig(max_clips=6))
    assert small.count("<video") == 0 and more.count("<video") == 6 and len(more) > len(small)
    plain = build_report([run], ReportConfig(max_clips=0, compress_plotly=False))
    assert len(plain) - len(small) > 2_000_000  # the compressed plotly.js saves over 2 MB


def test_runs_of_one_kind_share_axes_and_kinds_get_sections() -> None:
    a, b = open_run(DEMO / RUNS["vtcd"]), open_run(DEMO / "vtcd/vit-appearance-synthetic")
    text = build_report([a, b], ReportConfig(max_clips=0))
    figs = figures(text)
    placed = re.findall(r'id="(f\d+)" data-figure="([^"]*)"', text)
    tops = [figs[fid] for fid, s in placed if s == "top-concepts"]
    attrs = [figs[fid] for fid, s in placed if s == "attribution"]
    assert len(tops) == 2 and tops[0]["layout"]["xaxis"]["range"] == tops[1]["layout"]["xaxis"]["range"]
    assert attrs[0]["layout"]["yaxis"]["range"] == attrs[1]["layout"]["yaxis"]["range"]
    assert "style='--n:2'" in text and "Axes shared across the runs" in text
    mixed = build_report([a, open_run(DEMO / RUNS["predictions"])], ReportConfig(max_clips=0))
    assert mixed.count("<h2>") == 2 and "style='--n:2'" not in mixed


def test_share_axes_takes_the_union_of_the_data() -> None:
    import plotly.graph_objects as go

    one, two = go.Figure(go.Bar(x=["a"], y=[2.0])), go.Figure(go.Bar(x=["a"], y=[5.0]))
    share_axes([one, two], "y")
    assert one.layout.yaxis.range == two.layout.yaxis.range and one.layout.yaxis.range[0] == 0
    assert one.layout.yaxis.range[1] >= 5.0 and one.layout.xaxis.range is None


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("hostile-report")
    runs = []
    for kind in ("vcc", "vcc-debug"):
        dest = hostile_copy(DEMO / RUNS[kind], root / kind / Path(RUNS[kind]).name)
        manifest = json.loads((dest / "manifest.json").read_text())
        manifest.update(model={"spec": HOSTILE[0], "description": HOSTILE[1]}, data={"description": HOSTILE[3]},
                        config={HOSTILE[1]: HOSTILE[0], "x": {"y": HOSTILE[3]}})
        (dest / "manifest.json").write_text(json.dumps(manifest))
        runs.append(open_run(dest))
    return build_report(runs, SMALL)


def test_no_string_of_a_hostile_run_appears_unescaped(hostile: str) -> None:
    for bad in HOSTILE:  # the markdown one is plain text in HTML: no markdown is rendered here
        assert "<" not in bad or bad not in hostile, bad
    assert all(tag.startswith('<img src="data:') for tag in re.findall(r"<img\b[^>]*>", hostile))
    assert "<script>alert" not in hostile and "onerror=alert(1)>" not in hostile
    assert "&lt;img src=x onerror=alert(1)&gt;" in hostile  # shown, as text
    assert not re.search(rf'(src|href)="?https?://{re.escape(EVIL)}', hostile.replace("&lt;img src=", ""))


def _chromium() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None
    from benchmarks.pages import find_chromium

    return find_chromium()


def open_in_chromium(browser, paths: list[tuple[Path, bool]]) -> list[dict]:
    """Open each file in Chromium (the session's ``browser``); per file: its requests, console errors, dialogs,
    figures drawn and (when its flag is set) how many panels a click on a concept graph's node opened."""
    out = []
    for path, click_graph in paths:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        seen: dict = {"requests": [], "errors": [], "dialogs": []}
        page.on("request", lambda r, s=seen: s["requests"].append(r.url))
        page.on("console", lambda m, s=seen: s["errors"].append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e, s=seen: s["errors"].append(f"page error: {e}"))
        page.on("dialog", lambda d, s=seen: (s["dialogs"].append(d.message), d.dismiss()))
        page.goto(path.as_uri())
        page.wait_for_function("document.body.dataset.drawn !== undefined", timeout=90_000)
        seen["drawn"] = int(page.evaluate("document.body.dataset.drawn"))
        seen["plots"] = page.evaluate("document.querySelectorAll('.js-plotly-plot').length")
        if click_graph:
            fid = page.evaluate("[...document.querySelectorAll('.plot')].find(e => "
                                "document.getElementById(e.id + '-nodes')).id")
            page.evaluate(f"""() => {{
                const el = document.getElementById('{fid}');
                const map = JSON.parse(document.getElementById('{fid}-nodes').textContent);
                el.emit('plotly_click', {{points: [{{customdata: Object.keys(map)[1]}}]}});
            }}""")
            seen["panels_open"] = page.evaluate("document.querySelectorAll('.panel.on').length")
        out.append(seen)
        page.close()
    return out


@pytest.mark.skipif(_chromium() is None, reason="no system Chromium or no playwright: the report is not opened "
                    "in a browser (apt-get install chromium)")
def test_reports_open_offline_in_chromium(reports: dict[str, str], hostile: str, tmp_path: Path, browser) -> None:
    paths = []
    for name, text in (("vcc", reports["vcc"]), ("vtcd", reports["vtcd"]), ("hostile", hostile)):
        paths.append(tmp_path / f"{name}.html")
        paths[-1].write_text(text)
    for path, seen in zip(paths, open_in_chromium(browser, [(p, p.stem == "vcc") for p in paths]), strict=True):
        foreign = [u for u in seen["requests"] if not u.startswith(("file://", "data:", "blob:"))]
        assert not foreign, (path.name, foreign)
        assert not seen["errors"] and not seen["dialogs"], (path.name, seen["errors"], seen["dialogs"])
        assert seen["drawn"] == seen["plots"] == len(figures(path.read_text())) > 0
        if "panels_open" in seen:
            assert seen["panels_open"] == 1


def test_the_command_writes_a_report_and_refuses_bad_input(tmp_path: Path) -> None:
    from precompute.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["report", *argv])
        return code, out.getvalue(), err.getvalue()

    target = tmp_path / "r.html"
    code, out, err = run(str(DEMO / RUNS["predictions"]), "--out", str(target), "--max-images", "1")
    assert code == 0 and out.strip() == str(target) and target.is_file() and "report: 1/1" in err
    for argv, says in (([str(DEMO), "--out", str(target)], "not a run folder"),
                       ([str(tmp_path / "nope"), "--out", str(target)], "not a run folder"),
                       ([str(DEMO / RUNS["vtcd"]), "--out", str(tmp_path / "no" / "r.html")], "does not exist"),
                       ([str(DEMO / RUNS["vtcd"]), "--out", str(tmp_path / "r.txt")], "ending in .html"),
                       ([str(DEMO / RUNS["vtcd"]), "--out", str(target), "--max-clips", "-1"], "--max-clips")):
        code, out, err = run(*argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and says in err, (argv, err)
    forged = tmp_path / "runs" / "other" / "x"
    forged.mkdir(parents=True)
    manifest = json.loads((DEMO / RUNS["predictions"] / "manifest.json").read_text())
    (forged / "manifest.json").write_text(json.dumps({**manifest, "kind": "other", "files": {}}))
    code, _, err = run(str(forged), "--out", str(target))
    assert code == 2 and "a report holds runs of the kinds" in err


def test_the_page_components_render_and_build_only_when_asked(tmp_path: Path) -> None:
    from streamlit.testing.v1 import AppTest

    def page(run: str) -> None:
        import plotly.graph_objects as go

        from pages.components.figure_export import export_buttons
        from pages.components.report_button import report_button

        report_button([run], key="rep")
        export_buttons(go.Figure(go.Bar(x=[1], y=[2])), "a figure")

    at = AppTest.from_function(page, args=(str(DEMO / RUNS["predictions"]),)).run(timeout=60)
    assert not at.exception
    # the export popover's widgets exist only while it is open: a closed one adds no download button
    assert [b.label for b in at.get("download_button")] == ["Download report"]
    at.session_state["export-a-figure-pop"] = True
    at = at.run(timeout=60)
    assert not at.exception
    from core.export import find_chromium

    opened = ["Download report", "Download SVG"] if find_chromium() else ["Download report"]
    assert [b.label for b in at.get("download_button")] == opened
    assert find_chromium() or "needs Chromium" in " ".join(c.value for c in at.caption)
    from pages.components import report_button

    text = report_button._build([str(DEMO / RUNS["predictions"])], SMALL)
    assert text.startswith("<!DOCTYPE html>") and "efficientnet_lite0-photos" in text
    bad = report_button._build([str(tmp_path)], SMALL)
    assert "could not be made" in bad and "no manifest.json" in bad


def test_every_analysis_page_offers_a_report_of_its_run_and_of_runs_to_compare(monkeypatch) -> None:
    """The sidebar of an analysis page has "Download report"; picking other runs of the kind makes it a
    side-by-side report of them all."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("CONCEPT_LENS_ARTIFACTS", str(DEMO))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=180).run()
    at = at.switch_page("pages/static_dynamic.py").run()
    assert not at.exception
    buttons = [b for b in at.sidebar.get("download_button") if b.label.startswith("Download report")]
    assert [b.label for b in buttons] == ["Download report"]
    from tests.page_helpers import compare_with

    compare = compare_with(at, "static-dynamic")
    assert len(compare.options) == len([p for p in (DEMO / "static-dynamic").iterdir() if p.is_dir()]) - 1
    compare.select(compare.options[0]).run()
    assert [b.label for b in at.sidebar.get("download_button")
            if b.label.startswith("Download report")] == ["Download report (2 runs)"]
