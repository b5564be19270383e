"""The STARTED write of an ``async def`` task with ``track_started`` (sent by name, so
the worker writes it) does not wait for the app's producer pool, which the tasks' own
sends may hold: the asyncio pool writes it on connections of its own. Real `pgqueue
worker` processes (apps/pool_gaps.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgqueue import App
from tests.acceptance.procs import workers
from tests.conftest import wait_until
from tests.integration.worker.pool_gaps_helpers import lines, mark, start

pytestmark = pytest.mark.acceptance


def test_started_shows_while_the_tasks_hold_every_producer_connection(
        gaps_app: App, pg_dsn: str, schema: str, marks: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two coroutines hold both connections of the worker's producer pool (size 2); a
    tracked coroutine sent by name shows STARTED all the same, and runs."""
    monkeypatch.setenv("POOL_GAPS_PRODUCER_POOL", "2")
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", "asyncio", "-c", "5", "-l", "INFO")
        holders = [gaps_app.send_task("pool_gaps.holds_a_producer_connection", ["free"])
                   for _ in range(2)]
        wait_until(lambda: len(lines(marks, "holding")) == 2, timeout=30,
                   message=f"the pool held\n{worker.output()}")
        job = gaps_app.send_task("pool_gaps.tracked_waits_for", ["done"])
        # The producer pool's wait for a connection is 10 s: well past this.
        wait_until(lambda: job.state == "STARTED", timeout=5,
                   message=f"STARTED while the pool is held\n{worker.output()}")
        wait_until(lambda: lines(marks, "began", job.id), timeout=5, message="the run")
        mark(marks, "free")
        mark(marks, "done")
        assert job.get(timeout=30) == "done"
        assert [h.get(timeout=30) for h in holders] == [True, True]
