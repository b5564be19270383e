"""A real browser (Debian's headless Chromium, driven by Playwright) watches the bar fill."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import running_worker

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the browser test needs `pip install '.[dev]'` (Playwright)")
if not os.path.exists(CHROMIUM):
    pytest.skip("the browser test needs Debian's chromium: "
                "apt-get install -y chromium chromium-driver", allow_module_level=True)


@pytest.fixture
def server_url(flask_app: Any) -> Iterator[str]:
    """The example app served over real HTTP on a free loopback port."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, flask_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="flask-example", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def test_the_progress_bar_reaches_100_percent_and_shows_the_result(
        server_url: str, tmp_path: Path) -> None:
    from progress_app import queue

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(server_url)
            assert page.text_content("#percent") == "0%"
            with running_worker(queue):
                page.click("#start")
                # The bar moves through intermediate values before it is full.
                page.wait_for_function(
                    "() => { const v = +document.querySelector('#bar')"
                    ".getAttribute('aria-valuenow'); return v > 0 && v < 100; }",
                    timeout=20_000)
                page.wait_for_function(
                    "() => document.querySelector('#result').textContent !== ''",
                    timeout=30_000)
            page.screenshot(path=str(tmp_path / "progress.png"))
            assert page.text_content("#percent") == "100%"
            assert page.get_attribute("#bar", "aria-valuenow") == "100"
            # Drawn full, not only labelled so: the bar is as wide as its track.
            assert page.evaluate("document.querySelector('#bar').getBoundingClientRect().width"
                                 " === document.querySelector('.track')"
                                 ".getBoundingClientRect().width")
            assert page.text_content("#status") == "Task completed!"
            assert page.text_content("#result") == "Result: 42"
        finally:
            browser.close()
