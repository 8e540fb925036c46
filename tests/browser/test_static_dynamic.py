"""The static / dynamic page in Chromium: the default view's score histograms have bars."""

from __future__ import annotations

from tests.browser.conftest import exceptions_on_page
from tests.browser.test_frame import goto


def test_default_histograms_are_not_empty(page, app_url):
    goto(page, app_url, "static_dynamic")
    assert exceptions_on_page(page) == []
    chart = page.locator('[class*="st-key-sd_hist-"] .js-plotly-plot').first
    chart.wait_for()
    totals = chart.evaluate("el => el._fullData.map(t => Array.from(t.y || []).reduce((a, b) => a + b, 0))")
    assert len(totals) == 2 and all(t > 0 for t in totals), totals
    caption = page.locator('[data-testid="stCaptionContainer"]').filter(has_text=" units · static ").first
    n_units, n_dead = caption.inner_text().split(" units")[0], 0
    if "dead units" in caption.inner_text():
        n_dead = int(caption.inner_text().split("the ")[-1].split(" dead")[0])
    assert totals == [int(n_units) - n_dead] * 2
    bars = chart.evaluate("el => el.querySelectorAll('.bars .point path').length")
    assert bars > 0
