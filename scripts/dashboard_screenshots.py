"""Redo the dashboard's screenshots in docs/images/ (shown by docs/dashboard.md).

    python scripts/dashboard_screenshots.py [--dsn URL]

Seeds a throwaway schema with the browser tests' data, serves the dashboard on a loopback
port, and has Debian's headless Chromium (through Playwright) photograph each main page.
Each PNG must stay under 150 KB; the script fails if one does not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from pgqueue import App  # noqa: E402
from pgqueue.dashboard import DashboardSettings, create_app  # noqa: E402
from tests.acceptance.dashboard.server import serving  # noqa: E402
from tests.integration.dashboard.seed import seed  # noqa: E402
from tests.pgserver import fresh_schema  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LARGEST = 150 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get(
        "PGQUEUE_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    with fresh_schema(options.dsn, "shots_") as schema:
        app = App("shop", dsn=options.dsn, schema=schema, set_as_current=False)
        seeded = seed(app, options.dsn)
        pages = {"dashboard-overview.png": "/", "dashboard-queues.png": "/queues",
                 "dashboard-workers.png": "/workers", "dashboard-jobs.png": "/jobs",
                 "dashboard-job.png": f"/jobs/{seeded.failed}",
                 "dashboard-schedules.png": "/schedules"}
        too_big = []
        with serving(create_app(app, DashboardSettings())) as url, \
                sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
            tab = browser.new_page(base_url=url, viewport={"width": 1200, "height": 720})
            for name, path in pages.items():
                tab.goto(path)
                target = options.out / name
                tab.screenshot(path=str(target))
                size = target.stat().st_size
                print(f"{name:28} {size / 1024:6.1f} KB  {path}")
                if size > LARGEST:
                    too_big.append(name)
            browser.close()
        app.close()
    if too_big:
        print(f"over 150 KB: {', '.join(too_big)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
