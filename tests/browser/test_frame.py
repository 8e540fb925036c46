"""The page frame in Chromium: nothing leaves the machine, each page opens on a run of its own kind, and the
view lives in the URL (a pasted link restores it; a change updates it)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest

from tests.browser.conftest import drawn, exceptions_on_page, goto

PAGES = ["", "predictions", "static_dynamic", "vtcd", "vcc", "vcc_debug"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_stays_on_the_local_server(page, app_url, path):
    """The ``page`` fixture fails on any request to another host; the favicon is not a remote icon either."""
    goto(page, app_url, path)
    assert exceptions_on_page(page) == []
    icon = page.evaluate("() => (document.querySelector(\"link[rel='shortcut icon']\") || {}).href || ''")
    assert icon.startswith("data:") or urlparse(icon).netloc in ("", urlparse(app_url).netloc), icon
    assert any(urlparse(u).netloc == urlparse(app_url).netloc for u in page.requests)


@pytest.mark.parametrize("path,kinds", [("predictions", ("predictions",)), ("static_dynamic", ("static-dynamic",)),
                                        ("vtcd", ("vtcd",)), ("vcc", ("vcc",))])
def test_page_opens_on_a_run_of_its_kind(page, app_url, path, kinds):
    goto(page, app_url, path)
    text = page.inner_text('[data-testid="stMain"]')
    assert " run here" not in text and "is a `" not in text
    picked = selected(page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]'))
    assert any(f"{k} · " in picked for k in kinds), picked


def selected(box) -> str:
    """The shown value of a select box (its text, or its combobox input's value)."""
    inputs = box.locator("input")
    return box.inner_text() + " " + (inputs.first.input_value() if inputs.count() else "")


def query(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def select(page, label: str, option: str) -> None:
    """Pick ``option`` in the select box labelled ``label`` and wait for the rerun."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text(label, exact=True))
    field = box.locator("input").first
    field.click()
    field.fill(option)
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    drawn(page)


def test_the_url_restores_and_follows_the_view(page, app_url):
    goto(page, app_url, "static_dynamic")
    page.wait_for_url(re.compile(r"[?&]unit="), timeout=30_000)
    url = query(page)
    assert url.get("run") and url.get("model") and url.get("layer") and "unit" in url

    goto(page, app_url, f"static_dynamic?run={url['run']}&model=r3d-motion&layer=layer2&unit=3")
    assert exceptions_on_page(page) == []
    unit_box = page.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text("Unit", exact=True))
    assert unit_box.locator("input").first.input_value().startswith("3 · ")
    layer_box = page.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text("Layer", exact=True))
    assert "layer2" in selected(layer_box)
    assert query(page)["layer"] == "layer2" and query(page)["model"] == "r3d-motion"

    select(page, "Layer", "1 · layer1")
    page.wait_for_url(re.compile(r"[?&]layer=layer1"), timeout=30_000)
    page.reload(wait_until="domcontentloaded")
    drawn(page)
    layer_box = page.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text("Layer", exact=True))
    assert "layer1" in selected(layer_box)
    assert query(page)["run"] == url["run"]
