"""When a job starts, in every pool: not when it is claimed nor when it is handed to a
``-P processes`` child, but when its slot (the child) begins it. Until then it is
``reserved``, not ``active``. Real `pgqueue worker` processes (apps/pool_gaps.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pgqueue import App
from tests.acceptance.procs import _free_port, workers
from tests.conftest import wait_until
from tests.integration.metrics.helpers import parse, sample, scrape
from tests.integration.worker.pool_gaps_helpers import lines, mark, start

pytestmark = pytest.mark.acceptance


def ids(answer: dict[str, Any] | None) -> list[str]:
    """The job ids of an inspect answer, every node's."""
    return [job["id"] for jobs in (answer or {}).values() for job in jobs]


def started_count(port: int) -> float:
    return sample(parse(scrape(port)), "pgqueue_jobs_started_total",
                  task="pool_gaps.waits_for", queue="default")


def test_a_job_handed_to_a_child_that_has_not_begun_it_is_reserved_not_started(
        gaps_app: App, pg_dsn: str, schema: str, marks: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The child is held in worker_process_init: the job waits in its pipe. It is not
    started (inspect reserved lists it, active does not, the metrics count no start)
    until the child begins it."""
    monkeypatch.setenv("POOL_GAPS_HOLD_CHILDREN", "1")
    port = _free_port()
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", "processes", "-c", "1", "-l", "INFO",
                       "--metrics-port", str(port))
        wait_until(lambda: lines(marks, "child"), timeout=30, message="the held child")
        job = gaps_app.send_task("pool_gaps.waits_for", ["done"])
        inspect = gaps_app.control.inspect(timeout=10)
        wait_until(lambda: job.id in ids(inspect.reserved()), timeout=30,
                   message=f"the job reserved\n{worker.output()}")
        assert job.id not in ids(inspect.active())
        assert inspect.query_task(job.id) is not None
        [answer] = inspect.query_task(job.id).values()
        assert answer[job.id][0] == "reserved"
        assert started_count(port) == 0
        assert not lines(marks, "began", job.id)
        mark(marks, "children")
        wait_until(lambda: lines(marks, "began", job.id), timeout=30, message="the run")
        wait_until(lambda: job.id in ids(inspect.active()), timeout=30,
                   message="the job active")
        assert job.id not in ids(inspect.reserved())
        assert started_count(port) == 1
        mark(marks, "done")
        assert job.get(timeout=30) == "done"


@pytest.mark.parametrize("pool", ["threads", "solo", "processes", "asyncio"])
def test_active_lists_only_the_jobs_that_started(
        gaps_app: App, pg_dsn: str, schema: str, marks: Path,
        monkeypatch: pytest.MonkeyPatch, pool: str) -> None:
    """A claimed job held in the claim loop (behind a task_received receiver) is
    reserved, not active, in every pool; once it runs it is active, not reserved."""
    monkeypatch.setenv("POOL_GAPS_HOLD_RECEIVED", "1")
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", pool, "-c", "2", "-l", "INFO")
        job = gaps_app.send_task("pool_gaps.waits_for", ["done"])
        wait_until(lambda: lines(marks, "held", job.id), timeout=30,
                   message=f"the claimed job\n{worker.output()}")
        inspect = gaps_app.control.inspect(timeout=10)
        assert job.id in ids(inspect.reserved())
        assert job.id not in ids(inspect.active())
        mark(marks, "received")
        wait_until(lambda: lines(marks, "began", job.id), timeout=30, message="the run")
        # (-P processes: the worker sees the child's start when its supervisor next
        # wakes, within 50 ms)
        wait_until(lambda: job.id in ids(inspect.active()), timeout=30,
                   message="the job active")
        assert job.id not in ids(inspect.reserved())
        mark(marks, "done")
        assert job.get(timeout=30) == "done"


def test_a_child_that_dies_before_it_begins_its_job_costs_the_job_no_attempt(
        gaps_app: App, pg_dsn: str, schema: str, marks: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Hostile: the child dies (os._exit) in worker_process_init with a job in its pipe.
    Nothing of the job ran: a new child runs it, and a job with no retry left ends
    SUCCESS, not WorkerLostError."""
    flag = tmp_path / "die-once"
    flag.touch()
    monkeypatch.setenv("POOL_GAPS_CHILD_DIES_ONCE", str(flag))
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", "processes", "-c", "1", "-l", "INFO")
        wait_until(lambda: lines(marks, "dying"), timeout=30, message="the doomed child")
        job = gaps_app.send_task("pool_gaps.quick", [7], max_retries=0)
        inspect = gaps_app.control.inspect(timeout=10)
        wait_until(lambda: job.id in ids(inspect.reserved()), timeout=30,
                   message="the job in the doomed child's pipe")
        mark(marks, "die")
        assert job.get(timeout=30) == 7
        assert "died before it began" in worker.output()
