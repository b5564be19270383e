"""A job stopped by its pool, in every pool: at a hard time limit ``task_failure`` is sent
once, with TimeLimitExceeded, from the worker's process (never a killed child), as
Celery's prefork parent sends it, whatever the task does next; and the log never says
a stopped job succeeded. Real `pgqueue worker` processes (apps/pool_gaps.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pgqueue import App, TimeLimitExceeded, WorkerLostError
from tests.acceptance.procs import workers
from tests.conftest import wait_until
from tests.integration.worker.pool_gaps_helpers import (
    hooks_of,
    job_lines,
    lines,
    named,
    start,
)

pytestmark = pytest.mark.acceptance


# (pool, task): the task sleeps 4 s under a 1 s hard limit; a swallower catches its
# interruption (TimeLimitExceeded raised in its thread, or the cancel of its coroutine)
# and returns after the limit; exits_when_limited turns it into sys.exit(3).
CASES = [("threads", "sleeper"), ("threads", "swallower"), ("threads", "exits_when_limited"),
         ("solo", "sleeper"), ("solo", "swallower"), ("solo", "exits_when_limited"),
         ("processes", "sleeper"), ("processes", "swallower"),
         ("asyncio", "async_sleeper"), ("asyncio", "async_swallower"),
         ("asyncio", "swallower")]


@pytest.mark.parametrize(("pool", "task"), CASES)
def test_a_hard_time_limit_sends_task_failure_once_from_the_worker_in_every_pool(
        gaps_app: App, pg_dsn: str, schema: str, marks: Path, pool: str, task: str) -> None:
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", pool, "-c", "1", "-l", "INFO")
        job = gaps_app.send_task(f"pool_gaps.{task}", [4_000], time_limit=1)
        wait_until(lambda: job.state == "FAILURE", timeout=30,
                   message=f"the job's time limit\n{worker.output()}")
        wait_until(lambda: named(marks, job.id, "task_failure"), timeout=30,
                   message=f"task_failure\n{hooks_of(marks, job.id)}\n{worker.output()}")
        if pool != "processes":  # the run has ended: its end was dropped
            wait_until(lambda: named(marks, job.id, "task_postrun"), timeout=30,
                       message=f"the end of the run\n{worker.output()}")
        if pool != "processes" and task != "async_sleeper":  # (its cancel ends it quietly)
            wait_until(lambda: "after it was stopped; it stays FAILURE" in worker.output(),
                       timeout=30, message=f"the task's late end\n{worker.output()}")
        # The worker goes on: its one slot runs the next job.
        assert gaps_app.send_task("pool_gaps.quick", [7]).get(timeout=30) == 7
        assert worker.proc.poll() is None
        about = "\n".join(job_lines(worker, job.id))
    assert isinstance(job.result, TimeLimitExceeded)
    [sent] = named(marks, job.id, "task_failure")
    assert sent[1:3] == ["TimeLimitExceeded", str(worker.pid)], sent  # not a child's
    seen = hooks_of(marks, job.id)
    assert not [h for h in seen if h[0] in ("on_success", "task_success")], seen
    if pool == "processes":  # the child is killed: nothing of the run goes on (Celery)
        assert [h[0] for h in seen] == ["task_prerun", "task_failure"], seen
    assert not re.search(r"succeeded in|raised unexpected", about), about
    assert re.search(r"ERROR.*exceeded its time limit \(1\.0s\)", about), about


@pytest.mark.parametrize(("pool", "task"), [
    ("threads", "swallower"), ("solo", "swallower"), ("asyncio", "async_swallower"),
    ("processes", "swallower")])
def test_a_terminated_job_that_returns_later_logs_no_success(
        gaps_app: App, pg_dsn: str, schema: str, marks: Path, pool: str, task: str) -> None:
    """What the log says of a terminate, in each pool: terminated by request, and, for a
    task that swallows it and returns, an INFO line that its end was dropped."""
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", pool, "-c", "1", "-l", "INFO")
        job = gaps_app.send_task(f"pool_gaps.{task}", [3_000])
        wait_until(lambda: lines(marks, "began", job.id), timeout=30, message="the job")
        gaps_app.control.revoke(job.id, terminate=True)
        wait_until(lambda: job.state == "REVOKED", timeout=30,
                   message=f"the terminate\n{worker.output()}")
        if pool != "processes":
            wait_until(lambda: "ended SUCCESS after it was stopped; it stays REVOKED"
                       in worker.output(), timeout=30,
                       message=f"the task's late return\n{worker.output()}")
        assert gaps_app.send_task("pool_gaps.quick", [7]).get(timeout=30) == 7
        about = "\n".join(job_lines(worker, job.id))
    assert "terminated by request" in about, about
    assert not re.search(r"succeeded in|raised unexpected|ERROR", about), about
    assert not named(marks, job.id, "task_failure")
    assert [h[1] for h in named(marks, job.id, "task_revoked")] == ["True"]


def test_a_child_that_exits_mid_job_sends_task_failure_from_the_worker(
        gaps_app: App, pg_dsn: str, schema: str, marks: Path) -> None:
    """os._exit in a child, no retry left: FAILURE with WorkerLostError, and
    task_failure from the worker's process (the child's hooks died with it), once."""
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", "processes", "-c", "1", "-l", "INFO")
        job = gaps_app.send_task("pool_gaps.dies", [9], max_retries=0)
        wait_until(lambda: job.state == "FAILURE", timeout=30,
                   message=f"the lost child\n{worker.output()}")
        wait_until(lambda: named(marks, job.id, "task_failure"), timeout=30,
                   message="task_failure")
        assert gaps_app.send_task("pool_gaps.quick", [7]).get(timeout=30) == 7
        retried = gaps_app.send_task("pool_gaps.dies", [9], max_retries=1)
        wait_until(lambda: retried.state == "FAILURE", timeout=60,
                   message=f"the retried job's last loss\n{worker.output()}")
        wait_until(lambda: named(marks, retried.id, "task_failure"), timeout=30,
                   message="task_failure of the retried job")
    assert isinstance(job.result, WorkerLostError)
    [sent] = named(marks, job.id, "task_failure")
    assert sent[1:3] == ["WorkerLostError", str(worker.pid)], sent
    # Its first loss was retried (no task_failure then), its second was not.
    assert len(lines(marks, "began", retried.id)) == 2
    assert len(named(marks, retried.id, "task_failure")) == 1


def test_task_failure_of_a_time_limit_reaches_a_receiver_that_raises(
        gaps_app: App, pg_dsn: str, schema: str, marks: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Hostile: a receiver of the pool's task_failure that raises SystemExit changes
    nothing (logged), in the worker's process; the worker goes on."""
    monkeypatch.setenv("POOL_GAPS_HOSTILE_RECEIVER", "1")
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", "processes", "-c", "1", "-l", "INFO")
        job = gaps_app.send_task("pool_gaps.sleeper", [4_000], time_limit=1)
        wait_until(lambda: job.state == "FAILURE", timeout=30, message="the time limit")
        wait_until(lambda: "hostile receiver" in worker.output(), timeout=30,
                   message=f"the hostile receiver\n{worker.output()}")
        assert gaps_app.send_task("pool_gaps.quick", [7]).get(timeout=30) == 7
        assert worker.proc.poll() is None
    assert isinstance(job.result, TimeLimitExceeded)


def test_solo_keeps_the_hard_limit_of_a_task_that_swallows_its_soft_limit(
        gaps_app: App, pg_dsn: str, schema: str, marks: Path) -> None:
    """-P solo with a soft limit below the hard one: the soft limit is raised in the
    task (which swallows it), and the hard one still ends the job FAILURE at its time,
    with task_failure; the worker runs the next job once the task returns."""
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", "solo", "-l", "INFO")
        job = gaps_app.send_task("pool_gaps.swallower", [3_000], soft_time_limit=0.5,
                                 time_limit=1)
        wait_until(lambda: job.state == "FAILURE", timeout=30,
                   message=f"the hard limit\n{worker.output()}")
        assert isinstance(job.result, TimeLimitExceeded)
        wait_until(lambda: named(marks, job.id, "task_failure"), timeout=30,
                   message="task_failure")
        assert gaps_app.send_task("pool_gaps.quick", [7]).get(timeout=30) == 7
    assert len(lines(marks, "swallowed", job.id)) >= 2  # the soft limit, then the hard
