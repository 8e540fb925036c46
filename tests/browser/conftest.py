"""Browser tests: the dashboard served by a real Streamlit server on the demo root, driven in Chromium.

Uses Debian's ``chromium`` through Playwright (``executable_path``; Playwright never downloads a
browser here). When no browser can be had the whole folder is skipped with one clear reason.

Fixtures:
- ``app_url``: base URL of a Streamlit server started once per session on ``assets/demo``
  (``CONCEPT_LENS_BROWSER_ROOT`` overrides the root).
- ``browser``: one Chromium per session.
- ``page``: a fresh page per test; ``page.requests`` lists every URL it requested,
  ``page.console_errors`` its console errors and uncaught page exceptions. After the test, any
  request to a host other than the local server fails the test.
- ``goto(page, path)`` / ``settle(page)``: open a dashboard page and wait until Streamlit is idle.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import pytest

from benchmarks.pages import find_chromium, serve

REPO = Path(__file__).resolve().parents[2]
SETTLE_TIMEOUT_MS = 90_000
chromium_path = find_chromium  # a system Chromium, or None (the tests are then skipped)


def _skip_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "browser tests skipped: the playwright package is not installed (pip install -r requirements-dev.txt)"
    if chromium_path() is None:
        return "browser tests skipped: no system Chromium (apt-get install chromium, or set CONCEPT_LENS_CHROMIUM)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _skip_reason()
    if reason is None:
        return
    marker = pytest.mark.skip(reason=reason)
    for item in items:
        if "tests/browser" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(marker)


def pytest_report_header(config):
    reason = _skip_reason()
    return reason or f"browser tests: Chromium at {chromium_path()}"


def pytest_terminal_summary(terminalreporter):
    reason = _skip_reason()
    if reason is not None:
        terminalreporter.write_line(reason, yellow=True, bold=True)


@pytest.fixture(scope="session")
def app_url(tmp_path_factory):
    """A Streamlit server for ``app.py`` on the demo root (``CONCEPT_LENS_BROWSER_ROOT`` overrides)."""
    root = os.environ.get("CONCEPT_LENS_BROWSER_ROOT", str(REPO / "assets" / "demo"))
    yield from serve_app(root, tmp_path_factory.mktemp("streamlit") / "server.log")


def serve_app(root: str | Path, log: Path):
    """For fixtures: yields the URL of ``app.py`` served on ``root`` (the test fails if it cannot start)."""
    try:
        with serve(REPO / "app.py", root, log) as url:
            yield url
    except RuntimeError as e:
        pytest.fail(str(e))


def _streamlit_probe(url: str) -> bool:
    """Streamlit's client first asks ``<page path>/_stcore/{health,host-config}`` and falls back to the
    root on a 404: those 404s are how it finds its base URL, not errors."""
    return urlparse(url).path.endswith(("/_stcore/health", "/_stcore/host-config"))


@pytest.fixture
def page(browser, app_url):
    """A fresh 1600x1000 page that records requests and console errors; fails on non-local requests."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    pg = context.new_page()
    pg.requests = []
    pg.console_errors = []
    pg.on("request", lambda r: pg.requests.append(r.url))
    # "Failed to load resource" console lines duplicate the HTTP errors recorded below.
    pg.on("console", lambda m: pg.console_errors.append(m.text)
          if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    pg.on("pageerror", lambda e: pg.console_errors.append(f"page error: {e}"))
    pg.on("response", lambda r: pg.console_errors.append(f"HTTP {r.status}: {r.url}")
          if r.status >= 400 and not _streamlit_probe(r.url) else None)
    pg.on("requestfailed", lambda r: pg.console_errors.append(f"request failed: {r.url}"))
    yield pg
    context.close()
    local = urlparse(app_url).netloc
    foreign = sorted({urlparse(u).netloc for u in pg.requests
                      if urlparse(u).scheme in ("http", "https", "ws", "wss") and urlparse(u).netloc != local})
    assert not foreign, f"the page made requests to other hosts: {foreign}"


def settle(page, timeout_ms: int = SETTLE_TIMEOUT_MS) -> None:
    """Wait until the Streamlit app has rendered and is no longer running a script."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    page.wait_for_function(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            if (!app) return false;
            const running = document.querySelector('[data-testid="stStatusWidget"]');
            return app.getAttribute('data-test-script-state') !== 'running' && !running;
        }""",
        timeout=timeout_ms,
    )
    page.wait_for_timeout(300)


def drawn(page, attempts: int = 300) -> None:
    """Wait until the page has drawn (``settle``, then the page benchmark's test: a title, no script
    running, every chart and image in place), with the same element count twice 200 ms apart:
    ``settle`` alone can return before the first script run has drawn anything."""
    from benchmarks.pages import SETTLED_JS

    settle(page)
    last = -1
    for _ in range(attempts):
        n = page.evaluate(SETTLED_JS)
        if n >= 0 and n == last:
            return
        last = n
        page.wait_for_timeout(200)
    raise AssertionError(f"{page.url} did not finish drawing")


def goto(page, app_url: str, path: str = "") -> None:
    """Open ``app_url/path`` and wait until it has drawn."""
    page.goto(f"{app_url}/{path.lstrip('/')}", wait_until="domcontentloaded")
    drawn(page)


def exceptions_on_page(page) -> list[str]:
    """Texts of Streamlit exception boxes shown on the page."""
    return [e.inner_text() for e in page.query_selector_all('[data-testid="stException"]')]
