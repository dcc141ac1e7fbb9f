"""The opt-in interaction log written by a real uvicorn server: over HTTP, and by the web page's clicks."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from service_helpers import make_settings
from test_service_browser import ARGS, CHROMIUM, ServerThread, _require_browser, _wait_ids

from prodsearch.service.app import create_app


@pytest.fixture
def served(tiny_engine, tmp_path):
    log = tmp_path / "interactions.jsonl"
    with ServerThread(create_app(tiny_engine, make_settings(interaction_log=log))) as url:
        yield url, log


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_search_and_click_over_http_are_logged(served):
    url, log = served
    status, body = _post(url + "search", {"text": "yellow", "k": 2})
    assert status == 200
    shown = [r["id"] for r in body["results"]]
    assert _post(url + "events", {"product_id": shown[0], "query": "yellow", "session_id": "abc"}) == (
        200,
        {"logged": 1},
    )
    assert _post(url + "events", {"product_id": shown[0], "event": "like", "query": "yellow"})[0] == 422
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(r["event"], r["product_id"], r["query"]) for r in rows] == [
        ("view", shown[0], "yellow"),
        ("view", shown[1], "yellow"),
        ("click", shown[0], "yellow"),
    ]


@pytest.mark.browser
def test_the_web_page_reports_a_click_on_a_result(served):
    sync_api = _require_browser()
    url, log = served
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page()
        page.goto(url)
        page.fill("#q", "yellow")
        page.press("#q", "Enter")
        ids = _wait_ids(page, "ids.length >= 2")
        page.locator(".card .title").first.click()
        clicks = []
        for _ in range(100):  # the page is kept open until its click report has landed (or 10 s)
            clicks = [json.loads(x) for x in log.read_text().splitlines() if '"click"' in x]
            if clicks:
                break
            time.sleep(0.1)
        browser.close()
    assert [(c["product_id"], c["query"]) for c in clicks] == [(ids[0], "yellow")] and clicks[0]["session_id"]
