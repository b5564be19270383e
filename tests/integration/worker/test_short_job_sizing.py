"""A default ``-P threads`` worker grows for short jobs and stays small for slow ones
(pgqueue.worker.sizing): fast by default without one worker keeping slow jobs from the
others."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import psycopg

from pgqueue import App
from pgqueue.worker.sizing import LONG, ShortJobSizing
from pgqueue.worker.worker import SHORT_JOB_CONCURRENCY, default_concurrency
from tests.conftest import running_worker, wait_until

BASE = default_concurrency("threads")


def busy(worker: object) -> int:
    pool = worker.pool  # type: ignore[attr-defined]
    return int(pool.size - pool.free_slots())


def test_a_default_worker_grows_through_a_backlog_of_short_jobs(
        app: App, db: psycopg.Connection[Any]) -> None:
    @app.task(ignore_result=True)
    def tiny() -> None:
        pass

    tiny.apply_many([((), {})] * 3000)
    with running_worker(app) as worker:
        assert worker.sizing is not None and worker.sizing.base == BASE
        wait_until(lambda: worker.pool.size == SHORT_JOB_CONCURRENCY, timeout=30,
                   message="the pool to grow for short jobs")
        wait_until(lambda: worker.processed >= 3000, timeout=60, message="the drain")
        assert worker.concurrency == SHORT_JOB_CONCURRENCY
        assert db.execute("SELECT concurrency FROM workers WHERE id = %s",
                          [worker.worker_id]).fetchone() == (SHORT_JOB_CONCURRENCY,)


def test_a_chosen_concurrency_is_kept_whatever_the_jobs(app: App) -> None:
    @app.task(ignore_result=True)
    def tiny() -> None:
        pass

    app.conf.worker_concurrency = 8
    tiny.apply_many([((), {})] * 1000)
    with running_worker(app) as worker, running_worker(app, concurrency=5) as other:
        assert worker.sizing is None and other.sizing is None
        wait_until(lambda: worker.processed + other.processed >= 1000, timeout=60,
                   message="the drain")
        assert (worker.pool.size, other.pool.size) == (8, 5)


def test_two_default_workers_share_slow_jobs(app: App) -> None:
    """Neither worker holds more than its base size: 40 blocking jobs can only all run
    at once if both workers run some."""
    release = threading.Event()

    @app.task(ignore_result=True)
    def slow() -> None:
        release.wait(30)

    with running_worker(app, name="a@sizing") as a, running_worker(app, name="b@sizing") as b:
        try:
            slow.apply_many([((), {})] * (BASE + 8))
            wait_until(lambda: busy(a) + busy(b) == BASE + 8, timeout=30,
                       message="every slow job running")
            assert busy(a) <= BASE and busy(b) <= BASE
            assert busy(a) > 0 and busy(b) > 0
        finally:
            release.set()


def test_a_grown_worker_shrinks_back_when_jobs_turn_slow(app: App) -> None:
    @app.task(ignore_result=True)
    def tiny() -> None:
        pass

    @app.task(ignore_result=True)
    def slow() -> None:
        time.sleep(LONG * 2)

    tiny.apply_many([((), {})] * 3000)
    with running_worker(app) as worker:
        wait_until(lambda: worker.pool.size == SHORT_JOB_CONCURRENCY, timeout=30,
                   message="the pool to grow for short jobs")
        wait_until(lambda: worker.processed >= 3000, timeout=60, message="the drain")
        slow.apply_many([((), {})] * 300)
        wait_until(lambda: worker.pool.size == BASE, timeout=30,
                   message="the pool to shrink back for slow jobs")
        # from then on, never more slow jobs at once than the base size
        wait_until(lambda: busy(worker) <= BASE, timeout=10, message="surplus threads retired")
        for _ in range(20):
            assert busy(worker) <= BASE
            time.sleep(0.02)


def test_a_size_set_by_remote_control_is_left_alone(app: App) -> None:
    @app.task(ignore_result=True)
    def tiny() -> None:
        pass

    with running_worker(app) as worker:
        worker.remote.resize(BASE - 2)  # what control pool_shrink does
        tiny.apply_many([((), {})] * 2000)
        wait_until(lambda: worker.processed >= 2000, timeout=60, message="the drain")
        assert worker.pool.size == BASE - 2
        assert worker.sizing is not None and not worker.sizing.enabled


def test_garbage_run_times_change_nothing() -> None:
    sizing = ShortJobSizing(32, 100)
    for runtime in (0.0, -1.0, math.nan, math.inf, -math.inf):
        sizing.finished(runtime)
    assert sizing.average is None
    assert sizing.wanted(32, in_backlog=True) is None
    sizing.finished(0.001)
    assert sizing.wanted(32, in_backlog=False) is None  # short jobs, but no backlog
    assert sizing.wanted(32, in_backlog=True) == 100
