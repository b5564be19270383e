"""A job its pool stopped (terminate, hard time limit) ends once, as recorded then, even
when its task swallows the interruption and returns later: the late return counts
nowhere (``processed``, metrics) and fires no hook or signal of a success. Real
`pgqueue worker` processes (tests/integration/worker/apps/correct_tasks.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pgqueue import App
from tests.acceptance.procs import WorkerProcess, _free_port, workers
from tests.conftest import wait_until
from tests.integration.metrics.helpers import parse, sample, scrape
from tests.integration.worker.conftest import lines, start

pytestmark = pytest.mark.acceptance


def hooks_seen(marks: Path, job_id: str) -> list[str]:
    """``name state`` of each hook and signal that ran for ``job_id``, in order."""
    return [f"{m[1]} {m[3]}" for m in lines(marks, "hook") if m[2] == job_id]


def wait_for_the_late_return(worker: WorkerProcess, marks: Path, pool: str) -> None:
    """Until the worker has handled what the stopped task returned: its abandoned
    thread or coroutine gives back nothing after that (under -P solo, the next job
    runs after it)."""
    if pool == "solo":
        wait_until(lambda: lines(marks, "returns"), timeout=30, message="the late return")
        return
    wait_until(lambda: re.search(r"its abandoned (thread|coroutine) returned",
                                 worker.output()), timeout=30,
               message=f"the task's late return\n{worker.output()}")


def stop(correct_app: App, how: str, task: str, ms: int) -> Any:
    options: dict[str, Any] = {"time_limit": 1} if how == "time_limit" else {}
    return correct_app.send_task(task, [ms], **options)


STUBBORN = {"threads": "correct_tasks.hooked_stubborn",
            "solo": "correct_tasks.hooked_stubborn",
            "asyncio": "correct_tasks.hooked_async_stubborn"}


@pytest.mark.parametrize("how", ["terminate", "time_limit"])
@pytest.mark.parametrize("pool", ["threads", "asyncio"])
def test_a_stopped_job_that_returns_later_is_counted_once(
        correct_app: App, pg_dsn: str, schema: str, marks: Path, pool: str,
        how: str) -> None:
    """The job ends REVOKED (or FAILURE at its time limit) when stopped; its task
    swallows that and returns 3 s later, after its thread or coroutine was abandoned.
    inspect stats and the metrics count one job, ended as recorded; the return is
    logged at INFO, not as a late outcome the worker had to drop."""
    port = _free_port()
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", pool, "-c", "1", "-l", "INFO",
                       "--metrics-port", str(port))
        job = stop(correct_app, how, STUBBORN[pool], 3_000)
        wait_until(lambda: lines(marks, "began"), timeout=30, message="the stubborn job")
        if how == "terminate":
            correct_app.control.revoke(job.id, terminate=True)
        wait_until(lambda: job.state in ("REVOKED", "FAILURE"), timeout=30,
                   message=f"the job stopped\n{worker.output()}")
        wait_for_the_late_return(worker, marks, pool)
        [stats] = correct_app.control.inspect(timeout=10).stats().values()
        assert stats["processed"] == 1, stats
        samples = parse(scrape(port))
        counted = {what: sample(samples, f"pgqueue_jobs_{what}_total",
                                task=STUBBORN[pool], queue="default")
                   for what in ("succeeded", "failed", "revoked")}
        ended = "revoked" if how == "terminate" else "failed"
        assert counted == {"succeeded": 0, "failed": 0, "revoked": 0, ended: 1}, counted
        assert sample(samples, "pgqueue_job_run_seconds_count", task=STUBBORN[pool]) == 1
        output = worker.output()
        assert "Dropping late outcome" not in output
        assert f"ended SUCCESS after it was stopped; it stays {job.state}" in output
        # The pool's size is its own again: one slot, which runs the next job.
        assert correct_app.send_task("correct_tasks.quick", [7]).get(timeout=30) == 7
        assert worker.proc.poll() is None
    assert job.state == ("REVOKED" if how == "terminate" else "FAILURE")


@pytest.mark.parametrize("pool", ["threads", "asyncio", "solo", "processes"])
def test_a_terminated_job_fires_task_revoked_and_no_success_hook(
        correct_app: App, pg_dsn: str, schema: str, marks: Path, pool: str) -> None:
    """As in Celery, whose terminate kills the task's process: no on_success,
    after_return or task_success for a job that ends REVOKED, whatever its task does
    after; task_revoked once, terminated=True. task_postrun says the run was
    interrupted (state None), as it does when the task does not swallow the
    terminate. (-P processes kills the child: nothing of the task runs after.)"""
    task = STUBBORN.get(pool, "correct_tasks.hooked_stubborn")
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", pool, "-c", "1", "-l", "INFO")
        job = correct_app.send_task(task, [3_000])
        wait_until(lambda: lines(marks, "began"), timeout=30, message="the stubborn job")
        correct_app.control.revoke(job.id, terminate=True)
        wait_until(lambda: job.state == "REVOKED", timeout=30,
                   message=f"the job revoked\n{worker.output()}")
        if pool != "processes":
            wait_for_the_late_return(worker, marks, pool)
            assert lines(marks, "returns")  # it did return, with a success
            expected = ["task_revoked True", "task_postrun None"]
        else:
            expected = ["task_revoked True"]
        assert correct_app.send_task("correct_tasks.quick", [7]).get(timeout=30) == 7
        assert hooks_seen(marks, job.id) == expected, (hooks_seen(marks, job.id),
                                                       worker.output())
        assert worker.proc.poll() is None
    assert job.state == "REVOKED"


@pytest.mark.parametrize("pool", ["threads", "asyncio"])
def test_a_swallowed_time_limit_fires_no_success_hook(
        correct_app: App, pg_dsn: str, schema: str, marks: Path, pool: str) -> None:
    """FAILURE with TimeLimitExceeded at the limit; the task swallows it and returns
    "stubborn" later: no success hook or signal for a job that failed."""
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", pool, "-c", "1", "-l", "INFO")
        job = stop(correct_app, "time_limit", STUBBORN[pool], 3_000)
        job.get(timeout=30, propagate=False)
        assert job.state == "FAILURE"
        wait_for_the_late_return(worker, marks, pool)
        # task_failure (TimeLimitExceeded) comes from the pool at the limit, as Celery's
        # parent sends it; the late return adds no success hook.
        assert hooks_seen(marks, job.id) == ["task_failure None", "task_postrun None"], \
            worker.output()
        assert "after it was stopped; it stays FAILURE" in worker.output()


def test_shutdown_names_abandoned_coroutines_and_terminated_threads(
        correct_app: App, pg_dsn: str, schema: str, marks: Path) -> None:
    """The shutdown line counts every task still running that the pool gave up on: here
    a coroutine that swallowed its terminate (not a thread, not at a time limit)."""
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", "asyncio", "-c", "1")
        job = correct_app.send_task("correct_tasks.hooked_async_stubborn", [120_000])
        wait_until(lambda: lines(marks, "began"), timeout=30, message="the coroutine")
        correct_app.control.revoke(job.id, terminate=True)
        wait_until(lambda: "1 abandoned now" in worker.output(), timeout=30,
                   message=f"the coroutine abandoned\n{worker.output()}")
        worker.signal(15)
        worker.wait(60)
        assert "1 abandoned tasks (threads or coroutines that went on past their time " \
               "limit or terminate) may still be running" in worker.output()
