"""The static / dynamic page in Chromium: the default view's score histograms have bars, in the light (SVG)
and the interactive (plotly) chart modes, and their counts add up to the layer's scored units."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import exceptions_on_page
from tests.browser.test_frame import goto


def scored_units(page) -> int:
    """The one-layer view's units less its dead ones, from its caption."""
    caption = page.locator('[data-testid="stCaptionContainer"]').filter(has_text=" units · static ").first
    text = caption.inner_text()
    n_dead = int(text.split("the ")[-1].split(" dead")[0]) if "dead units" in text else 0
    return int(text.split(" units")[0]) - n_dead


@pytest.mark.parametrize("mode", ["light", "interactive"])
def test_default_histograms_are_not_empty(page, app_url, mode):
    goto(page, app_url, "static_dynamic" + ("?charts=interactive" if mode == "interactive" else ""))
    assert exceptions_on_page(page) == []
    if mode == "light":
        chart = page.locator('[class*="st-key-sd_hist-"] svg').first
        chart.wait_for()
        tips = chart.evaluate("el => [...el.querySelectorAll('rect > title')].map(t => t.textContent)")
        panels = chart.evaluate("el => [...el.querySelectorAll('text')].map(t => t.textContent)"
                                ".filter(t => t.startsWith('s_'))")
        assert panels == ["s_static", "s_dynamic"]
        counts = [int(re.search(r": (\d+) units$", t).group(1)) for t in tips]
        assert counts and sum(counts) == 2 * scored_units(page)
        return
    chart = page.locator('[class*="st-key-sd_hist-"] .js-plotly-plot').first
    chart.wait_for()
    totals = chart.evaluate("el => el._fullData.map(t => Array.from(t.y || []).reduce((a, b) => a + b, 0))")
    assert len(totals) == 2 and all(t > 0 for t in totals), totals
    assert totals == [scored_units(page)] * 2
    bars = chart.evaluate("el => el.querySelectorAll('.bars .point path').length")
    assert bars > 0


def test_export_popover_draws_its_controls_when_opened(page, app_url):
    """A figure's "Export figure" popover holds no widgets until it is opened (a rerun then draws its format,
    DPI, palette and download button)."""
    goto(page, app_url, "static_dynamic")
    assert page.get_by_role("button", name="Download SVG").count() == 0
    page.get_by_role("button", name="Export figure").first.click()
    page.get_by_role("button", name="Download SVG").wait_for(timeout=30_000)
    palette = page.get_by_text("Colour-blind-safe colours (Okabe-Ito)")
    palette.wait_for(timeout=30_000)  # its toggle's script may load after the button's (no other toggle on the page)
    assert palette.is_visible()
    assert exceptions_on_page(page) == []
