"""Concept connectome and Failure debugger in Chromium: a node click opens that concept, and a hostile run
(script and markdown in its layer and class names and warnings) runs no script and loads nothing remote."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.browser.conftest import REPO, exceptions_on_page, goto, serve_app, settle
from tests.hostile import EVIL, HOSTILE, hostile_copy

DEMO = REPO / "assets" / "demo"


def node_heading(page) -> str:
    """The concept panel's heading (``layer · concept c (n segments)``)."""
    return page.locator('[class*="st-key-node_panel"] h4').first.inner_text()


def panel_images(page) -> list[str]:
    """The concept panel's pictures (a gallery in light mode, Streamlit images in interactive mode)."""
    return page.eval_on_selector_all('[class*="st-key-node_panel"] [data-testid="stImage"] img, '
                                     '[class*="st-key-node_panel"] .cl-gallery img', "els => els.map(e => e.src)")


def click_svg_node(page, node_id: str) -> None:
    """Click node ``node_id`` of the page's (light mode, SVG) graph."""
    node = page.locator(f'.cl-svg [data-pick="{node_id}"]').first
    node.scroll_into_view_if_needed()
    node.click()
    page.wait_for_timeout(500)
    settle(page)


def click_node(page, node_id: str, chart: int = 0) -> None:
    """Click node ``node_id`` in the ``chart``-th clickable graph of the page, where plotly drew it."""
    where = """([id, k]) => {
        const gds = [...document.querySelectorAll('.js-plotly-plot')]
            .filter(g => g._fullData && g._fullData.some(t => t.name === 'concepts'));
        const gd = gds[k];
        gd.scrollIntoView({block: 'center'});
        const tr = gd._fullData.find(t => t.name === 'concepts');
        const i = tr.customdata.indexOf(id);
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
        return [r.left + xa._offset + xa.l2p(tr.x[i]), r.top + ya._offset + ya.l2p(tr.y[i])];
    }"""
    page.wait_for_function("""k => [...document.querySelectorAll('.js-plotly-plot')]
        .filter(g => g._fullData && g._fullData.some(t => t.name === 'concepts')).length > k""", arg=chart,
                           timeout=60_000)
    page.evaluate(where, [node_id, chart])
    page.wait_for_timeout(300)
    x, y = page.evaluate(where, [node_id, chart])
    page.mouse.move(x, y)
    page.wait_for_timeout(200)
    page.mouse.click(x, y)
    page.wait_for_timeout(500)
    settle(page)


def graph_of(cls: str) -> dict:
    return json.loads((DEMO / "vcc" / "efficientnet_lite0-photos" / "classes" / cls / "graph.json").read_text())


@pytest.mark.parametrize("mode", ["light", "interactive"])
def test_clicking_a_connectome_node_opens_that_concept(page, app_url, mode):
    goto(page, app_url, "vcc" + ("?charts=interactive" if mode == "interactive" else ""))
    page.wait_for_selector('[class*="st-key-node_panel"] h4', timeout=60_000)
    assert exceptions_on_page(page) == []
    before, images = node_heading(page), panel_images(page)
    slug = page.evaluate("() => new URLSearchParams(location.search).get('class')")
    graph = graph_of(slug)
    target = next(n for n in graph["nodes"] if n["layer"] == graph["layers"][0] and n["index"] == 1)
    (click_node if mode == "interactive" else click_svg_node)(page, target["id"])
    after = node_heading(page)
    assert after != before and after.startswith(f"{target['layer']} · concept 1 ({target['size']} segments)")
    assert images and panel_images(page) != images  # the clicked concept's exemplars
    assert page.evaluate("() => new URLSearchParams(location.search).get('node')") == target["id"]
    assert page.console_errors == [] and exceptions_on_page(page) == []


def test_clicking_a_debugger_node_opens_that_concept(page, app_url):
    goto(page, app_url, "vcc_debug")
    page.wait_for_selector('[class*="st-key-node_panel"] h4', timeout=60_000)
    assert exceptions_on_page(page) == []
    before = node_heading(page)
    debug = json.loads((DEMO / "vcc-debug" / "efficientnet_lite0-mistakes" / "debug.json").read_text())
    gfile = debug["vccs"][debug["images"][0]["vcc_true"]]["graph"]
    graph = json.loads((DEMO / "vcc-debug" / "efficientnet_lite0-mistakes" / gfile).read_text())
    target = next(n for n in graph["nodes"] if n["layer"] == graph["layers"][1] and n["index"] == 0)
    click_svg_node(page, target["id"])
    assert node_heading(page) != before
    assert node_heading(page).startswith(f"{target['layer']} · concept 0")
    assert page.console_errors == [] and exceptions_on_page(page) == []


# -- a hostile run ------------------------------------------------------------------------------------------


def make_hostile_root(root: Path) -> Path:
    """The demo vcc and vcc-debug runs with hostile layer names, class names and warnings, hashes fixed."""
    for kind, run_id in (("vcc", "efficientnet_lite0-photos"), ("vcc-debug", "efficientnet_lite0-mistakes")):
        hostile_copy(DEMO / kind / run_id, root / kind / run_id)
    return root


@pytest.fixture(scope="module")
def hostile_url(tmp_path_factory):
    """A second Streamlit server, on a root holding only the hostile runs."""
    root = make_hostile_root(tmp_path_factory.mktemp("hostile-root"))
    yield from serve_app(root, tmp_path_factory.mktemp("streamlit-hostile") / "server.log")


@pytest.mark.parametrize("path", ["vcc", "vcc_debug"])
def test_a_hostile_run_runs_no_script_and_loads_nothing_remote(browser, hostile_url, path):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    dialogs, requests = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: requests.append(r.url))
    try:
        goto(page, hostile_url, path)
        page.wait_for_selector('[class*="st-key-node_panel"] h4', timeout=60_000)
        settle(page)
        page.wait_for_timeout(1500)  # time for an injected onerror to fire
        text = page.inner_text("body")
        injected = [f.evaluate("() => document.querySelectorAll('img[onerror], svg [onerror], iframe').length")
                    for f in page.frames]
        scripts = [s for f in page.frames for s in f.eval_on_selector_all("script", "es => es.map(e => e.text)")]
    finally:
        context.close()
    assert dialogs == []
    assert not [u for u in requests if EVIL in urlparse(u).netloc]
    assert not [s for s in scripts if "alert(" in s]  # no script element from the run
    assert not any(injected)  # no element built from the run's text
    assert HOSTILE[0] in text  # shown as text
    assert "![x](http://evil.example/x.png)" in text
