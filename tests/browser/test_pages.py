"""Every page of the dashboard opens on the demo root in Chromium without an exception or console error."""

from __future__ import annotations

import pytest

from tests.browser.conftest import exceptions_on_page, goto

PAGES = ["", "predictions", "static_dynamic", "vtcd", "vcc", "vcc_debug"]


@pytest.mark.parametrize("path", PAGES)
def test_page_settles_without_errors(page, app_url, path):
    goto(page, app_url, path)
    assert exceptions_on_page(page) == []
    assert page.console_errors == []
