"""The web page in a real headless browser (Debian's chromium driven by Playwright): type a query,
upload a photo, click a facet, open an explanation, ask for similar products.

Set ``PRODSEARCH_SCREENSHOT=1`` (or a file path) to save a screenshot (default docs/screenshot.png);
with ``PRODSEARCH_SCREENSHOT_INDEX=INDEX`` the screenshot is taken of that (real) index instead.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from service_helpers import make_settings

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("PRODSEARCH_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _require_browser():
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(
            f"no chromium at {CHROMIUM} (install it with `apt-get install chromium`, or set PRODSEARCH_CHROMIUM)"
        )
    return pytest.importorskip(
        "playwright.sync_api", reason="the `playwright` Python package is not installed"
    )


class ServerThread:
    """uvicorn serving ``app`` on a free loopback port in a background thread."""

    def __init__(self, app) -> None:
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}/"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _card_ids(page) -> list[str]:
    return page.eval_on_selector_all(".card", "cards => cards.map(c => c.dataset.id)")


def _wait_ids(page, predicate_js: str) -> list[str]:
    page.wait_for_function(
        f"() => {{ const ids = [...document.querySelectorAll('.card')].map(c => c.dataset.id);"
        f" return ids.length > 0 && ({predicate_js}); }}",
        timeout=10_000,
    )
    return _card_ids(page)


def _images_loaded(page) -> bool:
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card img')].every(i => i.complete)", timeout=10_000
    )
    return page.eval_on_selector_all(
        ".card img", "imgs => imgs.length > 0 && imgs.every(i => i.naturalWidth > 0)"
    )


def _screenshot_path() -> Path | None:
    value = os.environ.get("PRODSEARCH_SCREENSHOT")
    if not value:
        return None
    return DOCS / "screenshot.png" if value in ("1", "true", "yes") else Path(value)


@pytest.fixture
def url(tiny_engine):
    """The tiny engine's web page, served on a free loopback port; yields its URL."""
    from prodsearch.service.app import create_app

    with ServerThread(create_app(tiny_engine, make_settings())) as served:
        yield served


@pytest.fixture
def browser():
    sync_api = _require_browser()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def test_search_upload_facet_explain_similar(browser, url, photos):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)

    # 1. type a query: the yellow products come first, with their photos
    page.fill("#q", "yellow")
    page.press("#q", "Enter")
    ids = _wait_ids(page, "ids[0] === 'p07' || ids[0] === 'p11'")
    assert set(ids[:2]) == {"p07", "p11"}
    assert _images_loaded(page)
    assert "results for" in page.inner_text("#status")

    # 2. the explanation opens on click (and is in the button's tooltip), in a shopper's words
    first = page.locator(".card").first
    assert "Words: yellow" in first.locator(".why-btn").get_attribute("title")
    first.locator(".why-btn").click()
    why = first.locator(".why").inner_text()
    assert first.locator(".why").is_visible() and "same words" in why and "lexical" not in why

    # 3. click a facet: only bags remain
    page.check("input[data-field='category'][data-value='bag']")
    ids = _wait_ids(page, "ids.every(i => ['p07', 'p08', 'p09'].includes(i))")
    assert ids[0] == "p07" and set(ids) <= {"p07", "p08", "p09"}

    # 4. "similar" on a result: other yellow products, not itself; the old facet ticks are gone
    page.locator(".card[data-id='p07'] .similar").click()
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('similar to')")
    ids = _card_ids(page)
    assert "p07" not in ids and ids[0] == "p11"
    assert page.eval_on_selector_all("#facets input:checked", "c => c.length") == 0

    # 5. upload a photo (image-only, "look" mode): that product comes first
    page.fill("#q", "")
    page.select_option("#mode", "image")
    page.set_input_files("#file", str(photos / "p04.jpg"))
    ids = _wait_ids(page, "ids[0] === 'p04'")
    assert ids[0] == "p04" and _images_loaded(page)
    assert page.is_visible("#preview")

    # 6. a refused upload shows the server's message, the page keeps working
    page.set_input_files(
        "#file", files=[{"name": "x.jpg", "mimeType": "image/jpeg", "buffer": b"not a jpeg"}]
    )
    page.wait_for_function("() => document.querySelector('#status').classList.contains('error')")
    assert "cannot decode" in page.inner_text("#status")

    shot = _screenshot_path()
    if shot and not os.environ.get("PRODSEARCH_SCREENSHOT_INDEX"):
        page.click("#clear-photo")
        page.select_option("#mode", "hybrid")
        page.fill("#q", "shirt")
        page.press("#q", "Enter")
        _wait_ids(page, "true")
        _images_loaded(page)
        page.screenshot(path=str(shot), full_page=True)


@pytest.mark.slow
def test_screenshot_of_a_real_index(browser):
    """Only with PRODSEARCH_SCREENSHOT_INDEX: serve that index with its real encoders, save the screenshot."""
    index, shot = os.environ.get("PRODSEARCH_SCREENSHOT_INDEX"), _screenshot_path()
    if not index or not shot:
        pytest.skip(
            "set PRODSEARCH_SCREENSHOT=1 and PRODSEARCH_SCREENSHOT_INDEX=INDEX to screenshot a real index"
        )
    from prodsearch.search.engine import Engine
    from prodsearch.service.app import create_app

    query = os.environ.get("PRODSEARCH_SCREENSHOT_QUERY", "red summer dress")
    with (
        Engine.open(index, lazy_model=False) as engine,
        ServerThread(create_app(engine, make_settings())) as url,
    ):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.fill("#q", query)
        page.press("#q", "Enter")
        _wait_ids(page, "true")
        assert _images_loaded(page)
        page.locator(".card .why-btn").first.click()
        page.screenshot(path=str(shot), full_page=False)


def _status(page) -> str:
    return page.inner_text("#status")


def _facet_counts(page) -> dict[tuple[str, str], int]:
    got = page.eval_on_selector_all(
        "#facets label",
        "ls => ls.map(l => [l.querySelector('input').dataset.field, l.querySelector('input').dataset.value,"
        " Number(l.querySelector('.count').dataset.count)])",
    )
    return {(f, v): n for f, v, n in got}


def _total(page) -> int:
    # "1–5 of 9 results for ..." -> 9
    text = _status(page)
    return int(text.split(" of ", 1)[1].split()[0])


def test_page_behaviours_mode_switch_facets_paging_debug_weak(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url + "?per_page=5")

    # switching the mode searches the text in the box, not the previous query
    page.fill("#q", "yellow")
    page.press("#q", "Enter")
    _wait_ids(page, "ids[0] === 'p07' || ids[0] === 'p11'")
    page.fill("#q", "waterproof")
    page.select_option("#mode", "lexical")
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('waterproof')")
    assert _card_ids(page)[0] == "p10"

    # a broad query: 12 results, 5 a page
    page.select_option("#mode", "hybrid")
    page.fill("#q", "yellow bag shoes jacket")
    page.press("#q", "Enter")
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('jacket')")
    total = _total(page)
    assert total > 5 and len(_card_ids(page)) == 5 and page.is_visible("#pager")
    seen = list(_card_ids(page))
    while page.is_enabled("#next"):
        page.click("#next")
        seen += _card_ids(page)
    assert len(seen) == total and len(set(seen)) == total  # every result once, in pages

    # every facet count is exactly what a click leaves, and the counts follow each click
    counts = _facet_counts(page)
    assert counts  # facet titles are human: "colour" -> "Colour"
    assert page.locator("#facets legend", has_text="Colour").count() == 1
    for (field, value), n in list(counts.items())[:4]:
        box = page.locator(f"input[data-field='{field}'][data-value='{value}']")
        box.check()
        page.wait_for_function("() => document.querySelector('#facets input:checked') !== null")
        assert _total(page) == n, (field, value)
        other = [(f, c) for (f, v), c in _facet_counts(page).items() if f != field]
        per_field: dict[str, int] = {}
        for f, c in other:
            per_field[f] = per_field.get(f, 0) + c
        assert all(s <= n for s in per_field.values())  # other fields count within the n results
        page.locator(f"input[data-field='{field}'][data-value='{value}']").uncheck()
        page.wait_for_function("() => document.querySelector('#facets input:checked') === null")

    # scores only in the debug view
    assert page.locator(".card .score").count() == 0
    page.goto(url + "?debug=1")
    page.fill("#q", "yellow")
    page.press("#q", "Enter")
    _wait_ids(page, "true")
    assert page.locator(".card .score").count() > 0 and " ms" in _status(page)

    # nonsense gets "no close match"
    page.select_option("#mode", "lexical")
    page.fill("#q", "qwertyuiop zxcv")
    page.press("#q", "Enter")
    page.wait_for_function("() => !document.querySelector('#notice').hidden")
    assert "No close match" in page.inner_text("#notice")


def test_phone_width_keeps_the_search_button_and_two_columns(browser, url):
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    page.goto(url)
    page.fill("#q", "yellow bag shoes jacket")
    page.click("#go")
    _wait_ids(page, "true")
    go = page.locator("#go").bounding_box()
    assert go["x"] >= 0 and go["x"] + go["width"] <= 390  # the Search button is not cut off
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    boxes = [page.locator(".card").nth(i).bounding_box() for i in range(2)]
    assert all(b["width"] >= 150 for b in boxes)  # not squeezed into a sliver
    assert boxes[0]["y"] == boxes[1]["y"]  # two columns side by side


def test_draw_a_crop_box_and_find_each_product_of_a_scene(browser, url, photos):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    page.select_option("#mode", "image")
    page.set_input_files("#file", str(photos / "p04.jpg"))
    _wait_ids(page, "ids[0] === 'p04'")
    assert page.is_visible("#cropper")

    box = page.locator("#crop-img").bounding_box()
    page.mouse.move(box["x"] + 0.2 * box["width"], box["y"] + 0.2 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.8 * box["width"], box["y"] + 0.8 * box["height"], steps=5)
    page.mouse.up()
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('the box')")
    query = json.loads(page.get_attribute("#results", "data-query"))
    assert query["crop"] == pytest.approx([0.2, 0.2, 0.8, 0.8], abs=0.02)  # fractions of the photo
    assert page.is_visible("#crop-rect") and _card_ids(page)

    page.check("#scene")
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('each product')")
    query = json.loads(page.get_attribute("#results", "data-query"))
    assert query["regions"] == "auto" and "crop" not in query and query["text"] is None
    assert _card_ids(page) and page.is_hidden("#crop-rect")
