"""A web process that sends tasks and reads results loads neither the worker nor the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from pgqueue import App
from tests.conftest import running_worker

PRODUCER = textwrap.dedent("""
    import json, sys
    import pgqueue

    app = pgqueue.App("light", dsn=sys.argv[1], schema=sys.argv[2])

    @app.task(name="light.add")
    def add(x, y):
        return x + y

    result = add.delay(2, 3)
    value = result.get(timeout=30)
    loaded = sorted(m for m in sys.modules
                    if m.split(".")[0] in ("pgqueue", "click", "croniter"))
    print(json.dumps({"value": value, "modules": loaded}))
""")

HEAVY = ("pgqueue.worker", "pgqueue.cli", "pgqueue.services", "click", "croniter")


def test_send_and_wait_load_no_worker_cli_or_scheduler(pg_dsn: str, schema: str) -> None:
    worker_app = App("light", dsn=pg_dsn, schema=schema)

    @worker_app.task(name="light.add")
    def add(x: int, y: int) -> int:
        return x + y

    try:
        with running_worker(worker_app):
            done = subprocess.run([sys.executable, "-c", PRODUCER, pg_dsn, schema],
                                  capture_output=True, text=True, timeout=60)
    finally:
        worker_app.close()
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["value"] == 5
    heavy = [m for m in report["modules"]
             if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == []
