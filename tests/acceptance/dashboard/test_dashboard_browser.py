"""A real browser (Debian's headless Chromium, driven by Playwright) loads each page of a
seeded dashboard, clicks Retry and Revoke, and sees the jobs' states change."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from pgqueue import App

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the browser test needs `pip install '.[dev]'` (Playwright)")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
if not os.path.exists(CHROMIUM):
    pytest.skip("the browser test needs Debian's chromium: "
                "apt-get install -y chromium chromium-driver", allow_module_level=True)

from pgqueue.dashboard import DashboardSettings, create_app  # noqa: E402
from tests.integration.dashboard.seed import Seeded, seed  # noqa: E402

from .server import serving  # noqa: E402


@pytest.fixture
def seeded(app: App, direct_dsn: str) -> Seeded:
    return seed(app, direct_dsn)


@pytest.fixture
def page(app: App, seeded: Seeded) -> Iterator[Any]:
    with serving(create_app(app, DashboardSettings(refresh=1))) as url, \
            sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(base_url=url)
            errors: list[str] = []
            tab.on("pageerror", lambda error: errors.append(str(error)))
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("response", lambda r: errors.append(f"{r.status} {r.url}")
                   if r.status >= 400 else None)
            yield tab
            assert not errors, errors  # no script error, no CSP violation
        finally:
            browser.close()


def test_each_page_loads_with_its_content(page: Any, seeded: Seeded) -> None:
    for path, heading_or_text in (("/", "Jobs finished per minute"), ("/queues", "Queues"),
                                  ("/workers", "celery@host1"), ("/jobs", "shop.charge"),
                                  ("/schedules", "nightly-report"),
                                  (f"/jobs/{seeded.failed}", "CardDeclined")):
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        assert heading_or_text in page.text_content("main"), path
    page.goto("/")
    assert page.locator("svg.chart rect").count() > 0  # bars were drawn


def test_clicking_retry_sends_the_failed_job_again(page: Any, seeded: Seeded) -> None:
    page.goto(f"/jobs/{seeded.failed}")
    assert page.text_content("h1 .state") == "FAILURE"
    page.click("button[data-action=retry]")
    page.wait_for_selector(".flash.ok")
    assert "sent again" in page.text_content(".flash")
    assert page.text_content("h1 .state") == "queued"
    assert "Earlier attempts" in page.text_content("main")


def test_clicking_revoke_in_the_list_revokes_the_job(page: Any, seeded: Seeded) -> None:
    page.goto("/jobs?state=queued&queue=mail")
    row = page.locator(f"tr[data-job='{seeded.queued}']")
    row.locator("button[data-action=revoke]").click()
    page.wait_for_selector(".flash.ok")
    page.goto(f"/jobs/{seeded.queued}")
    assert page.text_content("h1 .state") == "REVOKED"


def test_the_live_part_updates_without_a_reload(page: Any, app: App) -> None:
    page.goto("/queues")
    assert page.locator("tr[data-queue=reports]").count() == 0
    page.evaluate("window.__same_document = true")
    app.send_task("shop.report", queue="reports")
    page.wait_for_selector("tr[data-queue=reports]", timeout=15_000)
    assert page.evaluate("window.__same_document") is True  # not reloaded
