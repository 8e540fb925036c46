"""Benchmark of the dashboard in a real browser: time to a settled page and DOM size, per page.

    python benchmarks/pages.py [--root assets/demo] [--pages home static_dynamic ...] [--repeats 3]
                               [--charts light|interactive] [--screenshots DIR]

Starts ``streamlit run app.py`` on ``--root`` and, as the baseline, ``benchmarks/trivial_page.py`` (a
title and a line) in a second Streamlit server, and drives Debian's Chromium through Playwright
(``executable_path``; nothing is downloaded). Each page is opened in new tabs (each a new Streamlit
session): *first visit* in a fresh browser profile (empty HTTP cache; the server's caches cold for that
page's data), then ``--repeats`` *warm* visits in the same profile (what a user returning to the page gets:
scripts such as plotly.js cached, the run's data cached on the server), each right after a warm visit of
the trivial page, so that a change in the machine's load hits page and baseline alike; the table gives
medians, and *warm - trivial* is the median of the paired differences.
A page is *settled* when Streamlit reports no script running, every plotly chart has drawn its
SVG (light mode: every SVG figure is in the page), every image has loaded, and the DOM's element
count has not changed for 0.75 s; the time is from the navigation's start to that count's last
change. ``--charts interactive`` times the plotly mode (default: light). *DOM nodes* is
``document.getElementsByTagName('*').length`` once settled. Prints a markdown table, including
*warm - trivial*; ``--screenshots DIR`` also saves a full-page PNG of each page (first warm visit) as
``DIR/<page>.png``, plus ``predictions-misclassified.png`` and ``static_dynamic-units.png`` (the
file names of ``docs/screenshots/``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: the project's packages
    sys.path.insert(0, str(REPO))

from core.export import find_chromium  # noqa: E402  (one finder for the exports, the tests and this benchmark)

TRIVIAL = Path(__file__).resolve().parent / "trivial_page.py"
PAGES = ["home", "predictions", "static_dynamic", "vtcd", "vcc", "vcc_debug"]
NAV = {"home": ("Runs", "Concept Lens"), "predictions": ("Predictions", "Predictions"),
       "static_dynamic": ("Static / dynamic", "Static / dynamic units"),
       "vtcd": ("Concept tubelets", "Concept tubelets"), "vcc": ("Concept connectome", "Concept connectome"),
       "vcc_debug": ("Failure debugger", "Failure debugger")}
"""Page -> (its link in the sidebar, its title)."""
VIEWPORT = {"width": 1400, "height": 1000}
POLL_S = 0.05
STABLE_S = 0.75  # lazily loaded parts (data grids, charts) can appear this long after the script ends
TIMEOUT_S = 120.0

SETTLED_JS = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute('data-test-script-state') === 'running') return -1;
    if (document.querySelector('[data-testid="stStatusWidget"], [data-testid="stSkeleton"]')) return -1;
    const main = document.querySelector('[data-testid="stMain"]');
    if (!main || !main.querySelector('h1')) return -1;
    for (const c of document.querySelectorAll('[data-testid="stPlotlyChart"]'))
        if (!c.querySelector('.main-svg')) return -1;
    for (const c of document.querySelectorAll('.cl-svg'))  // the light mode's SVG figures and galleries
        if (!c.childElementCount) return -1;
    for (const i of document.images) if (!i.complete) return -1;
    return document.getElementsByTagName('*').length;
}"""


def chromium_path() -> str:
    """:func:`find_chromium`, or exit with what to do."""
    return find_chromium() or sys.exit(
        "benchmarks/pages.py: no Chromium found (apt-get install chromium, or set CONCEPT_LENS_CHROMIUM)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(script: Path, root: str | Path, log: Path, port: int | None = None) -> Iterator[str]:
    """``streamlit run script`` headless on ``127.0.0.1`` with ``root`` as the artifact root; yields its
    URL once healthy and stops the server on exit. Raises RuntimeError (with the log's tail) when it
    exits or does not start within 90 s."""
    port = port or free_port()
    env = {**os.environ, "CONCEPT_LENS_ARTIFACTS": str(root)}
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start in 90 s: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_settled(page) -> None:
    """Wait (untimed) until the page is settled, as :func:`visit` defines it."""
    last, since = -1, time.perf_counter()
    while True:
        n, now = page.evaluate(SETTLED_JS), time.perf_counter()
        if n != last:
            last, since = n, now
        elif n >= 0 and now - since >= STABLE_S:
            return
        if now - since > TIMEOUT_S:
            raise TimeoutError(f"{page.url} did not settle in {TIMEOUT_S:.0f} s")
        page.wait_for_timeout(int(POLL_S * 1000))


def full_screenshot(page, path: Path) -> None:
    """The whole page as one PNG: Streamlit scrolls inside its main block, not the document, so the
    viewport is made as tall as the content for the shot (and put back afterwards)."""
    height = page.evaluate("() => Math.max(...Array.from(document.querySelectorAll("
                           "'[data-testid=\"stMain\"], [data-testid=\"stMainBlockContainer\"]'), e => e.scrollHeight))")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], min(int(height) + 40, 8000))})
    page.wait_for_timeout(700)
    wait_settled(page)
    page.screenshot(path=str(path))
    page.set_viewport_size(VIEWPORT)


def shot_misclassified(page, folder: Path) -> None:
    """predictions-misclassified.png: the grid with "Only misclassified" on."""
    page.get_by_text("Only misclassified", exact=True).click()
    page.wait_for_timeout(500)
    wait_settled(page)
    full_screenshot(page, folder / "predictions-misclassified.png")


def shot_units(page, folder: Path) -> None:
    """static_dynamic-units.png: one screen from the "Units of one layer" view."""
    page.get_by_role("heading", name="Units of one layer").scroll_into_view_if_needed()
    page.evaluate("() => { const h = Array.from(document.querySelectorAll('h3'))"
                  ".find(e => e.textContent.startsWith('Units of one layer')); if (h) h.scrollIntoView(); }")
    page.wait_for_timeout(500)
    page.screenshot(path=str(folder / "static_dynamic-units.png"))


EXTRA_SHOTS = {"predictions": shot_misclassified, "static_dynamic": shot_units}


def settle_time(page, start: float, label: str) -> tuple[float, int]:
    """Poll until settled (as :func:`visit` defines it); (seconds from ``start`` to the DOM's last change,
    element count)."""
    last, since = -1, start
    while True:
        n = page.evaluate(SETTLED_JS)
        now = time.perf_counter()
        if n != last:
            last, since = n, now
        elif n >= 0 and now - since >= STABLE_S:
            return since - start, last
        if now - start > TIMEOUT_S:
            raise TimeoutError(f"{label} did not settle in {TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)


def visit(context, url: str, screenshot: Path | None = None, extra=None) -> tuple[float, int]:
    """Open ``url`` in a new tab of ``context`` (a new Streamlit session; the context keeps the browser's
    HTTP cache); (seconds to a settled page, DOM element count)."""
    page = context.new_page()
    try:
        start = time.perf_counter()
        page.goto(url, wait_until="commit")
        seconds, last = settle_time(page, start, url)
        if screenshot is not None:
            full_screenshot(page, screenshot)
            if extra is not None:
                extra(page, screenshot.parent)
        return seconds, last
    finally:
        page.close()


def switch(page, link: str, title: str) -> tuple[float, int]:
    """Click the sidebar link ``link`` of an open, settled page (Streamlit switches pages in the same tab and
    session: scripts stay loaded, the server's caches stay warm); (seconds until the page titled ``title``
    has settled, element count)."""
    start = time.perf_counter()
    page.locator('[data-testid="stSidebarNav"] a', has_text=link).first.click()
    page.wait_for_function("t => { const h = document.querySelector('[data-testid=\"stMain\"] h1');"
                           " return h && h.textContent.trim().startsWith(t); }", arg=title,
                           timeout=TIMEOUT_S * 1000)
    return settle_time(page, start, title)


def switches(context, url: str, pairs: list[tuple[str, str, str]]) -> list[tuple[float, int]]:
    """For each ``(from link, to link, to title)``: open ``url``, click ``from link``, then time the click on
    ``to link`` (each in the same tab and session)."""
    page = context.new_page()
    out = []
    try:
        page.goto(url, wait_until="commit")
        wait_settled(page)
        for src, dst, title in pairs:
            page.locator('[data-testid="stSidebarNav"] a', has_text=src).first.click()
            page.wait_for_timeout(300)
            wait_settled(page)
            switch(page, dst, title)  # the first switch to a page warms its data and code
            page.locator('[data-testid="stSidebarNav"] a', has_text=src).first.click()
            page.wait_for_timeout(300)
            wait_settled(page)
            out.append(switch(page, dst, title))
    finally:
        page.close()
    return out


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.machine()}, {os.cpu_count()} cores, load {load:.1f} at start"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO / "assets" / "demo", help="artifact root to serve")
    parser.add_argument("--pages", nargs="+", default=PAGES, choices=PAGES, help="pages to time")
    parser.add_argument("--screenshots", type=Path, help="save a full-page PNG per page here")
    parser.add_argument("--repeats", type=int, default=5,
                        help="warm visits per page, each after one of the trivial page (the table gives medians)")
    parser.add_argument("--charts", choices=["light", "interactive"], default="light",
                        help="the dashboard's chart mode (light: SVG figures, the default; interactive: plotly)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    from playwright.sync_api import sync_playwright

    root = args.root.resolve()
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="pages-bench-"))
    print(f"machine: {machine()}; root {root}; server logs in {logs}", file=sys.stderr)
    rows = []
    try:
        with serve(REPO / "app.py", root, logs / "app.log") as app_url, \
                serve(TRIVIAL, root, logs / "trivial.log") as trivial_url, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
            warmup = browser.new_context(viewport=VIEWPORT)
            visit(warmup, trivial_url)  # the browser's own first start is not the page's time
            warmup.close()
            trivial = browser.new_context(viewport=VIEWPORT)  # warm: the baseline's visits interleave the pages'
            first_trivial = visit(trivial, trivial_url)
            context = browser.new_context(viewport=VIEWPORT)
            [base_switch] = switches(context, trivial_url, [("Trivial", "Second", "Second trivial page")])
            context.close()
            rows.append(("trivial Streamlit page", first_trivial, [visit(trivial, trivial_url)], [], base_switch))
            # every dashboard page but Runs lives under a path, where the frontend first probes the path as a
            # base URL: the same trivial page under a path shows what that costs by itself
            under, under_base = [], []
            for _ in range(args.repeats):
                under_base.append(visit(trivial, trivial_url))
                under.append(visit(trivial, f"{trivial_url}/second"))
            rows.append(("trivial page under a path (`/second`)", None, under, under_base, None))
            for name in args.pages:
                url = f"{app_url}/{'' if name == 'home' else name}?charts={args.charts}"
                context = browser.new_context(viewport=VIEWPORT)  # first visit: empty browser cache
                first = visit(context, url)
                shot = args.screenshots / f"{name}.png" if args.screenshots else None
                warm, base = [], []
                for i in range(args.repeats):  # page and trivial page in turn: a change of load hits both
                    base.append(visit(trivial, trivial_url))
                    warm.append(visit(context, url, shot if i == 0 else None, EXTRA_SHOTS.get(name)))
                src = "Predictions" if name == "home" else "Runs"
                [moved] = switches(context, f"{app_url}/?charts={args.charts}", [(src, NAV[name][0], NAV[name][1])])
                context.close()
                rows.append((name, first, warm, base, moved))
                print(f"{name}: first {first[0]:.2f} s, warm {' '.join(f'{w[0]:.2f}' for w in warm)} s (trivial "
                      f"{' '.join(f'{b[0]:.2f}' for b in base)}), switch {moved[0]:.2f} s, {warm[0][1]} nodes",
                      file=sys.stderr)
            trivial.close()
            browser.close()
    except RuntimeError as e:
        sys.exit(f"benchmarks/pages.py: {e}")
    trivial_switch = rows[0][4][0]
    print(f"\n{machine()}, Chromium {chromium_path()}, root `{root.name}`, charts {args.charts}, "
          f"{args.repeats} warm visits per page (medians)\n")
    print("| page | first visit (s) | warm, new tab (s) | trivial, same rounds (s) | warm - trivial (s) "
          "| switch in the app (s) | switch - trivial (s) | DOM nodes (warm) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, first, warm, base, moved in rows:
        w = median(x[0] for x in warm)
        if base:
            b = median(x[0] for x in base)
            delta = median(x[0] - y[0] for x, y in zip(warm, base, strict=True))  # paired: page minus its baseline
            cells = f"{b:.2f} | {delta:+.2f}"
        else:
            cells = "— | +0.00"
        first_cell = "—" if first is None else f"{first[0]:.2f}"
        switch_cells = "— | —" if moved is None else f"{moved[0]:.2f} | {moved[0] - trivial_switch:+.2f}"
        print(f"| {name} | {first_cell} | {w:.2f} | {cells} | {switch_cells} | {warm[0][1]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
