"""Every job ends, and the worker goes on: old correctness gaps, each shown with real
`pgqueue worker` processes (tests/integration/worker/apps/correct_tasks.py) on the
shared server."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import App
from tests.acceptance.procs import workers
from tests.conftest import wait_until
from tests.integration.worker.conftest import lines, start

pytestmark = pytest.mark.acceptance


# -- floats keep their type through jsonb ---------------------------------------------------
FLOATS = [1e300, 2.0, -0.0, 1.5e-300, 1e20, 1e16, 123456789012345678.0, 5e-324,
          -1.7976931348623157e308, 0.1, 1e-5, -2.5e22, 9007199254740993.0]


def test_floats_round_trip_as_floats_through_a_worker(
        correct_app: App, pg_dsn: str, schema: str, db: psycopg.Connection[Any]) -> None:
    """jsonb keeps numbers as numeric, and writes 1e20 as 100000000000000000000, which
    Python reads back as an int: args and results must come back as the floats sent."""
    with workers() as procs:
        start(procs, pg_dsn, schema, "-c", "2")
        nested = {"deep": [FLOATS, {"x": 1e25}], "int": 10**20}
        result = correct_app.send_task("correct_tasks.echo", FLOATS,
                                       {"nested": nested}).get(timeout=30)
    assert result["types"] == ["float"] * len(FLOATS), result["types"]
    assert all(type(v) is float for v in result["values"])
    assert result["values"] == FLOATS
    assert result["named"]["nested"] == nested
    assert type(result["named"]["nested"]["deep"][1]["x"]) is float
    assert type(result["named"]["nested"]["int"]) is int  # ints stay ints
    # -0.0 comes back equal, but as 0.0: Postgres' numeric has no negative zero.
    assert math.copysign(1, result["values"][2]) == 1.0
    # A plain SQL reader sees the same numbers (as numeric).
    stored = db.execute("SELECT result->'values'->>4 FROM results").fetchone()[0]
    assert float(stored) == 1e20


def test_any_float_survives_jsonb(db: psycopg.Connection[Any]) -> None:
    """Many floats at the edges, through json_dumps, Postgres' jsonb and back."""
    import json
    import random
    import struct

    from pgqueue.utils import json_dumps

    rng = random.Random(16)
    edges = [float(f"1e{e}") for e in range(-323, 309)] + [
        struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(3000)]
    edges = [x for x in edges if math.isfinite(x)] + [2.0**n for n in range(-1074, 1024)]
    text = db.execute("SELECT %s::jsonb::text", [json_dumps(edges)]).fetchone()[0]
    back = json.loads(text)
    assert [type(x) for x in back] == [float] * len(edges)
    assert back == edges


# -- an abort asked while the worker died is seen by the worker that runs the job next -----
def test_an_abort_survives_the_rescue_of_its_job(
        correct_app: App, pg_dsn: str, schema: str, marks: Path) -> None:
    """Celery's AbortableTask reads ABORTED from the result backend, so a redelivered
    task sees ``is_aborted()`` True: here too, and the job ends REVOKED."""
    from pgqueue.contrib.abortable import AbortableAsyncResult

    with workers() as procs:
        first = start(procs, pg_dsn, schema, "-c", "1", "--lease", "2")
        job = correct_app.send_task("correct_tasks.abortable", [60_000])
        wait_until(lambda: lines(marks, "began"), timeout=30, message="the first run")
        first.signal(9)
        first.wait(10)
        AbortableAsyncResult(job.id, app=correct_app).abort()
        second = start(procs, pg_dsn, schema, "-c", "1")
        began = wait_until(lambda: [m for m in lines(marks, "began")
                                    if m[2] == str(second.pid)], timeout=60,
                           message="the run after the rescue")
        assert began[0][3] == "aborted=True", began
        assert job.get(timeout=30, propagate=False) is not None
        assert job.state == "REVOKED"
        assert "abort" in str(job.result)


# -- terminate in a thread: the job ends at once, its slot comes back ----------------------
@pytest.mark.parametrize("pool", ["threads", "asyncio"])
def test_terminate_frees_a_thread_slot_even_if_the_task_swallows_it(
        correct_app: App, pg_dsn: str, schema: str, marks: Path, pool: str) -> None:
    """A thread cannot be killed: the job is recorded REVOKED at once, the thread that
    swallowed the interruption is abandoned (as past a hard time limit) and a new thread
    takes its slot; the worker's other work goes on. -P asyncio runs a plain task in a
    thread of its own, stopped the same way."""
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", pool, "-c", "1")
        job = correct_app.send_task("correct_tasks.stubborn", [20_000])
        wait_until(lambda: lines(marks, "began"), timeout=30, message="the stubborn job")
        correct_app.control.revoke(job.id, terminate=True)
        wait_until(lambda: job.state == "REVOKED", timeout=10,
                   message=f"the job revoked at once\n{worker.output()}")
        wait_until(lambda: lines(marks, "swallowed"), timeout=10,
                   message="the task swallowing its interruption")
        # One slot, still running the stubborn function: a new job runs all the same.
        assert correct_app.send_task("correct_tasks.quick", [7]).get(timeout=10) == 7
        assert worker.proc.poll() is None
        assert "abandoned" in worker.output()
    assert job.state == "REVOKED"  # its late return changed nothing


# -- self.retry() counts against the job's max_retries ------------------------------------
def test_retry_obeys_the_max_retries_the_job_was_sent_with(
        correct_app: App, pg_dsn: str, schema: str, marks: Path) -> None:
    with workers() as procs:
        start(procs, pg_dsn, schema, "-c", "2")
        more = correct_app.send_task("correct_tasks.retrying", max_retries=5)
        default = correct_app.send_task("correct_tasks.retrying")
        none = correct_app.send_task("correct_tasks.retrying", max_retries=0)
        for result in (more, default, none):
            result.get(timeout=60, propagate=False)
    attempts = lines(marks, "attempt")
    assert sorted(int(a[2]) for a in attempts if a[1] == more.id) == [0, 1, 2, 3, 4, 5]
    # Sent by name without max_retries: the task's own (1) counts, as in Celery.
    assert sorted(int(a[2]) for a in attempts if a[1] == default.id) == [0, 1]
    assert sorted(int(a[2]) for a in attempts if a[1] == none.id) == [0]
    for result in (more, default, none):
        assert result.state == "FAILURE"


# -- -P asyncio: plain tasks run in threads of the pool's own, as many as -c -----------------
def test_asyncio_runs_as_many_plain_tasks_at_once_as_its_concurrency(
        correct_app: App, pg_dsn: str, schema: str, marks: Path) -> None:
    """20 plain tasks that each end only once all 20 have begun: they need 20 threads at
    once (the loop's default executor has min(32, cores + 4))."""
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", "asyncio", "-c", "20")
        jobs = [correct_app.send_task("correct_tasks.barrier", [20, 60]) for _ in range(20)]
        for job in jobs:
            assert job.get(timeout=90) is True, worker.output()
        assert len(lines(marks, "arrived")) == 20


def test_a_terminated_plain_task_in_the_asyncio_pool_is_interrupted_in_its_thread(
        correct_app: App, pg_dsn: str, schema: str, marks: Path) -> None:
    """As in -P threads: the job ends REVOKED at once, the terminate is raised in its
    thread (here when its long sleep returns, so it never reaches its end), and its one
    slot runs the next job meanwhile (the thread is abandoned after a second)."""
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", "asyncio", "-c", "1")
        job = correct_app.send_task("correct_tasks.plain_sleeper", [6_000])
        wait_until(lambda: lines(marks, "began"), timeout=30, message="the plain task")
        correct_app.control.revoke(job.id, terminate=True)
        wait_until(lambda: job.state == "REVOKED", timeout=10,
                   message=f"the job revoked at once\n{worker.output()}")
        assert correct_app.send_task("correct_tasks.quick", [7]).get(timeout=10) == 7
        wait_until(lambda: "its abandoned thread returned" in worker.output(), timeout=30,
                   message="the sleep returning into the terminate")
        assert not lines(marks, "ended")
        assert worker.proc.poll() is None
        assert "Traceback" not in worker.output()
    assert job.state == "REVOKED"


def test_a_plain_task_under_asyncio_cannot_exit_the_worker(
        correct_app: App, pg_dsn: str, schema: str, marks: Path) -> None:
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", "asyncio", "-c", "2")
        job = correct_app.send_task("correct_tasks.exits")
        job.get(timeout=30, propagate=False)
        assert job.state == "FAILURE"
        assert "can't exit the worker" in str(job.result)
        assert correct_app.send_task("correct_tasks.quick", [7]).get(timeout=10) == 7
        assert worker.proc.poll() is None


def test_a_plain_task_stuck_past_its_time_limit_under_asyncio_frees_its_slot(
        correct_app: App, pg_dsn: str, schema: str, marks: Path) -> None:
    """Stuck in a C call that nothing interrupts: FAILURE/TimeLimitExceeded at the
    limit, its thread abandoned (counted) and its one slot given to a new thread."""
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", "asyncio", "-c", "1")
        job = correct_app.send_task("correct_tasks.blocks_forever", time_limit=1)
        job.get(timeout=30, propagate=False)
        assert job.state == "FAILURE"
        assert "TimeLimitExceeded" in repr(job.result)
        assert correct_app.send_task("correct_tasks.quick", [7]).get(timeout=10) == 7
        assert "1 abandoned now" in worker.output()
        assert worker.proc.poll() is None


# -- -P asyncio: a coroutine stopped is stopped, whatever it does about the cancel ----------
def test_a_terminated_coroutine_that_swallows_the_cancel_and_returns_ends_revoked(
        correct_app: App, pg_dsn: str, schema: str, marks: Path) -> None:
    """As in -P threads: the terminate records REVOKED, then cancels; the coroutine
    catches the CancelledError and returns "swallowed", which is logged and dropped."""
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", "asyncio", "-c", "1", "-l", "INFO")
        job = correct_app.send_task("correct_tasks.async_swallower", [60_000])
        wait_until(lambda: lines(marks, "began"), timeout=30, message="the coroutine")
        correct_app.control.revoke(job.id, terminate=True)
        wait_until(lambda: job.state == "REVOKED", timeout=10,
                   message=f"the job revoked at once\n{worker.output()}")
        wait_until(lambda: "ended SUCCESS after it was stopped" in worker.output(),
                   timeout=10, message="the coroutine's return, logged and dropped")
        assert lines(marks, "swallowed")
        assert correct_app.send_task("correct_tasks.quick", [7]).get(timeout=10) == 7
        assert "Dropping late outcome" not in worker.output()
        assert "Traceback" not in worker.output()
    assert job.state == "REVOKED"
    assert "terminated" in str(job.result)


@pytest.mark.parametrize("how", ["terminate", "time_limit"])
def test_a_coroutine_that_swallows_every_cancel_gives_its_slot_back(
        correct_app: App, pg_dsn: str, schema: str, marks: Path, how: str) -> None:
    """It catches each CancelledError and awaits on: the job ends as the pool recorded it
    (REVOKED, or FAILURE at its time limit), and a second later the coroutine is
    abandoned like a thread that does the same: its one slot runs the next job."""
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", "asyncio", "-c", "1")
        options: dict[str, Any] = {"time_limit": 1} if how == "time_limit" else {}
        job = correct_app.send_task("correct_tasks.async_stubborn", [60_000], **options)
        wait_until(lambda: lines(marks, "began"), timeout=30, message="the coroutine")
        if how == "terminate":
            correct_app.control.revoke(job.id, terminate=True)
        wait_until(lambda: job.state in ("REVOKED", "FAILURE"), timeout=30,
                   message=f"the job stopped\n{worker.output()}")
        wait_until(lambda: lines(marks, "swallowed"), timeout=10,
                   message="the coroutine swallowing its cancel")
        assert correct_app.send_task("correct_tasks.quick", [7]).get(timeout=30) == 7
        assert "its coroutine is abandoned and may still be running (1 abandoned now)" \
            in worker.output()
        assert worker.proc.poll() is None
    if how == "terminate":
        assert job.state == "REVOKED"
    else:
        assert job.state == "FAILURE"
        assert "TimeLimitExceeded" in repr(job.result)


def test_abandoned_coroutines_are_capped_at_the_concurrency(
        correct_app: App, pg_dsn: str, schema: str, marks: Path) -> None:
    """-c 1 abandons one coroutine (or thread) at most: a second that swallows its
    terminate keeps its slot (logged) until it returns; then the next job runs."""
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", "asyncio", "-c", "1")
        for n, ms in enumerate((60_000, 3_000)):
            job = correct_app.send_task("correct_tasks.async_stubborn", [ms])
            wait_until(lambda n=n: len(lines(marks, "began")) == n + 1, timeout=30,
                       message="the coroutine")
            correct_app.control.revoke(job.id, terminate=True)
            wait_until(lambda job=job: job.state == "REVOKED", timeout=30,
                       message=f"the job revoked\n{worker.output()}")
        wait_until(lambda: "1 abandoned already (the most this pool abandons)"
                   in worker.output(), timeout=30, message="the cap reached")
        assert correct_app.send_task("correct_tasks.quick", [7]).get(timeout=60) == 7
        assert worker.proc.poll() is None


def test_async_tasks_show_started_even_when_the_default_executor_is_busy(
        correct_app: App, pg_dsn: str, schema: str, marks: Path) -> None:
    """The STARTED write of an async task with track_started (sent by name: the row does
    not say so yet) is a blocking statement, run off the loop. The loop's default
    executor (min(32, cores + 4) threads) is the tasks' own, for asyncio.to_thread():
    with every one of its threads held by tasks, 20 more tracked tasks must still show
    STARTED while they run, as their slots allow."""
    import os

    default_threads = min(32, (os.cpu_count() or 1) + 4)
    tracked = 20
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", "asyncio", "-c",
                       str(default_threads + tracked))
        holders = [correct_app.send_task("correct_tasks.holds_a_default_thread", [120])
                   for _ in range(default_threads)]
        wait_until(lambda: len(lines(marks, "holding")) == default_threads, timeout=60,
                   message="the default executor's threads all held")
        jobs = [correct_app.send_task("correct_tasks.tracked_until_released", [120])
                for _ in range(tracked)]
        try:
            wait_until(lambda: len(lines(marks, "arrived")) == tracked, timeout=60,
                       message=f"the tracked tasks running\n{worker.output()}")
            wait_until(lambda: all(j.state == "STARTED" for j in jobs), timeout=30,
                       message="every running tracked task shown STARTED: "
                               f"{[j.state for j in jobs]}")
        finally:
            with marks.open("a") as f:
                f.write("release\n")
        for job in [*jobs, *holders]:
            assert job.get(timeout=60) is True


# -- a terminate that comes after its job ended ---------------------------------------------
def test_a_terminate_after_the_job_ended_stops_its_retry_for_a_while(
        correct_app: App, pg_dsn: str, schema: str, db: psycopg.Connection[Any],
        marks: Path) -> None:
    """revoke(terminate=True) of a running job whose attempt ends (with a retry) before
    the worker reads the request: the worker keeps the request 30 s, as Celery's worker
    keeps a revoked id, so the retry it claims meanwhile ends REVOKED without running.
    (The pools keep a request for a job that ended under the same rule, then drop it:
    tests/unit/test_terminate_first.py.)"""
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", "threads", "-c", "2")
        job = correct_app.send_task("correct_tasks.retries_once")
        wait_until(lambda: db.execute("SELECT state FROM jobs WHERE id = %s",
                                      [job.id]).fetchone() == ("retry",),
                   timeout=30, message="the first attempt ended with a retry")
        correct_app.control.request("terminate", [job.id])
        # Requests are read in order: once the ping is answered, the terminate was seen.
        assert correct_app.control.ping(timeout=10)
        db.execute("UPDATE jobs SET run_at = now() WHERE id = %s", [job.id])
        wait_until(lambda: job.state == "REVOKED", timeout=30,
                   message=f"the retry terminated\n{worker.output()}")
        assert [a[2] for a in lines(marks, "attempt")] == ["0"]
        assert worker.proc.poll() is None


# -- a terminate racing the claim is not lost ------------------------------------------------
@pytest.mark.parametrize(("pool", "task"), [
    ("threads", "correct_tasks.plain_sleeper"),
    ("solo", "correct_tasks.plain_sleeper"),
    ("processes", "correct_tasks.plain_sleeper"),
    ("asyncio", "correct_tasks.async_sleeper"),
    ("asyncio", "correct_tasks.plain_sleeper"),
])
def test_a_terminate_between_the_claim_and_the_run_stops_the_job(
        correct_app: App, pg_dsn: str, schema: str, db: psycopg.Connection[Any],
        marks: Path, pool: str, task: str) -> None:
    """The worker holds the job (claimed, registered) but its pool has not started it
    when the terminate comes: a task_received receiver in the app keeps the claim loop
    there until the worker has begun terminating it. The job must never run its
    minute: it ends REVOKED, the worker runs the next job, and lives on."""
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", pool, "-c", "2", "-l", "INFO")
        for _ in range(2):
            job = correct_app.send_task(task, [60_000], {"hold_until_terminated": True})
            wait_until(lambda job=job: db.execute("SELECT state FROM jobs WHERE id = %s",
                                                  [job.id]).fetchone() == ("started",),
                       timeout=30, message="the job claimed")
            correct_app.control.revoke(job.id, terminate=True)
            wait_until(lambda job=job: job.state == "REVOKED", timeout=30,
                       message=f"the job revoked, not run\n{worker.output()}")
            assert f"began {job.id}" not in marks.read_text()
        assert correct_app.send_task("correct_tasks.quick", [7]).get(timeout=30) == 7
        assert worker.proc.poll() is None
        assert "Traceback" not in worker.output()


@pytest.mark.parametrize(("pool", "task"), [
    ("threads", "correct_tasks.abortable"),
    ("solo", "correct_tasks.abortable"),
    ("asyncio", "correct_tasks.async_sleeper"),
])
def test_terminate_racing_the_claim_is_never_lost(
        correct_app: App, pg_dsn: str, schema: str, db: psycopg.Connection[Any],
        pool: str, task: str) -> None:
    """Jobs that would run a minute, each revoked with terminate a moment (0 to a few
    ms) after it was sent: before its claim, between the claim's commit and the worker
    holding it, between the pool taking it and its run, or while it runs. Every one
    ends REVOKED, soon, in every pool."""
    import random
    import time

    rng = random.Random(5)
    rounds, batch = 150, 4
    concurrency = "1" if pool == "solo" else "8"
    with workers() as procs:
        worker = start(procs, pg_dsn, schema, "-P", pool, "-c", concurrency)
        sent = []
        for _ in range(rounds):
            jobs = [correct_app.send_task(task, [60_000]) for _ in range(batch)]
            time.sleep(rng.random() * 0.004)
            correct_app.control.revoke([j.id for j in jobs], terminate=True)
            sent += jobs
        wait_until(lambda: db.execute("SELECT count(*) FROM results").fetchone()[0]
                   == len(sent), timeout=60, interval=0.2,
                   message="every job terminated (none runs its minute)")
        assert worker.proc.poll() is None
    states = dict(db.execute("SELECT state, count(*) FROM results GROUP BY 1").fetchall())
    assert states == {"REVOKED": len(sent)}, states
