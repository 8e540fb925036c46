"""Every page of the dashboard opens on the demo root in Chromium without an exception or console error."""

from __future__ import annotations

import pytest

from tests.browser.conftest import exceptions_on_page, goto, settle

PAGES = ["", "predictions", "static_dynamic", "vtcd", "vcc", "vcc_debug"]


@pytest.mark.parametrize("path", PAGES)
def test_page_settles_without_errors(page, app_url, path):
    goto(page, app_url, path)
    assert exceptions_on_page(page) == []
    assert page.console_errors == []


def test_a_click_on_a_prediction_tile_inspects_that_image(page, app_url):
    """Predictions (light mode): the grid is one gallery; a click on a tile opens that image below it."""
    goto(page, app_url, "predictions")
    tiles = page.locator(".cl-gallery [data-pick]")
    assert tiles.count() == 12
    wanted = tiles.nth(4).get_attribute("data-pick")
    assert page.evaluate("() => new URLSearchParams(location.search).get('image')") != wanted
    tiles.nth(4).click()
    page.wait_for_function("id => new URLSearchParams(location.search).get('image') === id", arg=wanted,
                           timeout=30_000)
    settle(page)
    shown = page.locator('[class*="st-key-pred_image"] input').first.input_value()
    assert shown.startswith(f"{wanted} · ")  # the "Inspect image" select box follows the click
    assert exceptions_on_page(page) == [] and page.console_errors == []


def test_a_click_on_an_exemplar_enlarges_it(page, app_url):
    """A gallery without picks (the connectome's exemplars): a click shows the picture over the page, a second
    click or Escape closes it."""
    goto(page, app_url, "vcc")
    tile = page.locator('[class*="st-key-node_panel"] .cl-gallery [data-zoom]').first
    small = tile.locator("img").bounding_box()["width"]
    tile.click()
    assert "cl-zoomed" in tile.get_attribute("class")
    assert tile.locator("img").bounding_box()["width"] > 1.5 * small
    page.keyboard.press("Escape")
    assert "cl-zoomed" not in (tile.get_attribute("class") or "")
    tile.click()
    tile.click()
    assert "cl-zoomed" not in (tile.get_attribute("class") or "")
    assert exceptions_on_page(page) == [] and page.console_errors == []
