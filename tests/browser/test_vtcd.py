"""Concept tubelets in Chromium: the synced players stay in sync across a pause, a step and the slider, and
keep their frame and play state across a rerun, including one that rebuilds the player."""

from __future__ import annotations

import json

from tests.browser.conftest import exceptions_on_page, goto, settle


def player(page):
    """The frame of the (first) tubelet player, once it has drawn."""
    page.wait_for_function("""() => [...document.querySelectorAll('iframe')].some(f => {
        try { return f.contentDocument && f.contentDocument.body.dataset.frame !== undefined; }
        catch (e) { return false; } })""", timeout=60_000)
    return next(f for f in page.frames if f.query_selector("#slider") and f.query_selector("body[data-frame]"))


def state(frame) -> dict:
    """The shared frame, play state and every tile's frame, read from the player's DOM."""
    return frame.evaluate("""() => ({
        frame: +document.body.dataset.frame, playing: document.body.dataset.playing === '1',
        tiles: [...document.querySelectorAll('.frame')].map(e => +e.dataset.frame),
        slider: +document.getElementById('slider').value, speed: document.getElementById('speed').value,
        cfg: JSON.parse(document.getElementById('cfg').textContent)})""")


def assert_in_sync(s: dict) -> None:
    n = max(s["cfg"]["frames"])
    assert s["slider"] == s["frame"]
    assert s["tiles"] == [min(k - 1, s["frame"] * k // n) for k in s["cfg"]["frames"]]


def pause(page):
    """Pause the player (the frame found afresh: a rerun may just have replaced it); returns its frame."""
    for _ in range(3):
        frame = player(page)
        try:
            if state(frame)["playing"]:
                frame.click("#play", timeout=5_000)
            frame.wait_for_function("() => document.body.dataset.playing === '0'", timeout=5_000)
            return frame
        except Exception:  # the frame went away under us: find the new one
            page.wait_for_timeout(500)
    raise AssertionError("the player did not pause")


def test_players_stay_in_sync_and_keep_their_place_across_reruns(page, app_url):
    goto(page, app_url, "vtcd")
    assert exceptions_on_page(page) == []
    page.wait_for_timeout(1000)  # autoplay
    settle(page)
    frame = pause(page)
    assert len(state(frame)["tiles"]) > 1
    first = state(frame)
    assert_in_sync(first)
    page.wait_for_timeout(400)
    assert state(frame)["frame"] == first["frame"]  # paused: the clock stands still for every tile
    frame.click("#fwd")
    stepped = state(frame)
    n = max(stepped["cfg"]["frames"])
    assert stepped["frame"] == (first["frame"] + 1) % n and not stepped["playing"]
    assert_in_sync(stepped)
    target = (first["frame"] + n // 2) % n
    frame.eval_on_selector("#slider", "(e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }", target)
    slid = state(frame)
    assert slid["frame"] == target
    assert_in_sync(slid)
    frame.select_option("#speed", "2")

    # a rerun from another widget that leaves the player as it is
    page.locator('[class*="st-key-vt_color"]').get_by_text("concepts", exact=True).click()
    settle(page)
    frame = player(page)
    after = state(frame)
    assert (after["frame"], after["playing"], after["speed"]) == (target, False, "2")
    assert_in_sync(after)

    # tiles per row and tile width change in the player itself (no rerun), in sync, and stay for rebuilt players
    frame.select_option("#cols", "2")
    frame.select_option("#width", "240")
    laid = frame.evaluate("""() => { const g = document.querySelector('.grid'), f = document.querySelector('.frame');
        return {cols: g.style.getPropertyValue('--cols'), w: f.getBoundingClientRect().width,
                tops: new Set([...document.querySelectorAll('.tile')].map(t => t.offsetTop)).size}; }""")
    assert laid["cols"] == "2" and round(laid["w"]) == 240
    assert laid["tops"] == -(-len(after["tiles"]) // 2)  # two tiles a row
    assert state(frame)["frame"] == target and not state(frame)["playing"]
    assert_in_sync(state(frame))

    # a rerun that rebuilds the player (another number of videos): same frame, still paused, same speed and layout
    videos = page.locator('[class*="st-key-vt_nvid"]')
    count = len(after["tiles"])
    videos.get_by_text(str(count - 1), exact=True).click()
    settle(page)
    page.wait_for_timeout(500)
    frame = player(page)
    rebuilt = state(frame)
    assert len(rebuilt["tiles"]) == len(after["tiles"]) - 1  # rebuilt with one video fewer
    assert (rebuilt["frame"], rebuilt["playing"], rebuilt["speed"]) == (target, False, "2")
    assert frame.evaluate("() => [document.getElementById('cols').value, document.getElementById('width').value]") \
        == ["2", "240"]
    assert_in_sync(rebuilt)

    # playing, a rebuilt player plays on from where it was rather than from frame 1
    frame.click("#play")
    page.wait_for_timeout(300)
    videos.get_by_text(str(count), exact=True).click()  # rebuild again
    settle(page)
    page.wait_for_timeout(500)
    resumed = state(player(page))
    assert resumed["playing"] and resumed["speed"] == "2"
    assert_in_sync(state(pause(page)))
    assert json.dumps(resumed["cfg"]["state"])  # the key the state is kept under
    assert page.console_errors == [] and exceptions_on_page(page) == []


def test_clicking_a_grid_square_picks_that_head(page, app_url):
    """Light mode: a click on a square of the layers x heads grid selects that layer and head."""
    goto(page, app_url, "vtcd")
    cell = page.locator('.st-key-vt_grid-svg [data-pick]').nth(5)
    layer, _, head = cell.get_attribute("data-pick").rpartition("|")
    cell.click()
    page.wait_for_timeout(500)
    settle(page)
    assert page.evaluate("() => new URLSearchParams(location.search).get('layer')") == layer
    assert page.evaluate("() => new URLSearchParams(location.search).get('head')") == head
    assert exceptions_on_page(page) == [] and page.console_errors == []
