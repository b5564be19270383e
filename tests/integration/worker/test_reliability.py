"""Leases, fencing, election, rescue, revoke and abort, pools and time limits (issue 3)."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from typing import Any

import psycopg
import pytest

from pgqueue import App, SoftTimeLimitExceeded, TimeLimitExceeded
from pgqueue.contrib.abortable import AbortableAsyncResult, AbortableTask
from pgqueue.db.connection import Dedicated, through_pooler
from pgqueue.services.leader import LeaderElection
from pgqueue.services.rescuer import Rescuer
from pgqueue.worker.claiming import from_start
from pgqueue.worker.execution import ClaimedJob, Outcome
from pgqueue.worker.finisher import Finisher
from pgqueue.worker.heartbeat import Heartbeat
from pgqueue.worker.holdings import Holdings
from tests.conftest import running_worker, wait_until


def _claim(app: App, worker: str, lease: float = 30.0, limit: int = 10) -> list[ClaimedJob]:
    db = Dedicated(app.dsn, app.schema, "test")
    rows = db.execute(app.queries["job_claim"], {
        **from_start(["default"]), "limit": limit, "worker": worker, "lease": lease})
    db.close()
    return [ClaimedJob.from_row(r) for r in rows]


def test_a_dropped_connection_is_closed_not_kept_by_pgqueue(app: App,
                                                             db: psycopg.Connection[Any]) -> None:
    """Nothing in pgqueue (such as its per-connection cursor) keeps a connection alive
    once its owner is gone: leaked sessions would run a server out of connections."""
    if through_pooler(app.dsn):
        pytest.skip("a pooler keeps its server sessions open: pg_stat_activity shows them")
    dedicated = Dedicated(app.dsn, app.schema, "dropped-owner")
    assert dedicated.execute(b"SELECT 1") == [(1,)]
    del dedicated
    gc.collect()
    sessions = "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s"
    wait_until(lambda: db.execute(sessions, ["%dropped-owner%"]).fetchone()[0] == 0,  # type: ignore[index]
               timeout=20, message="the dropped connection's session to end")


def _expire_leases(db: psycopg.Connection[Any]) -> None:
    db.execute("UPDATE jobs SET lease_expires_at = now() - interval '1 second' "
               "WHERE state = 'started'")


def test_stale_finish_is_fenced_off(app: App, db: psycopg.Connection[Any],
                                    caplog: pytest.LogCaptureFixture) -> None:
    app.send_task("t.any", [1])
    (first,) = _claim(app, "worker-a")
    _expire_leases(db)
    Rescuer(app.queries, 1.0).run_once(Dedicated(app.dsn, app.schema, "t"))
    (second,) = _claim(app, "worker-b")
    assert (second.id, second.attempt) == (first.id, 2)

    holdings = Holdings()
    holdings.add(first.id, first.attempt)
    finisher = Finisher(app.dsn, app.queries, "worker-a", holdings)
    with caplog.at_level(logging.WARNING, "pgqueue.worker"):
        finisher._flush([Outcome(first.id, first.attempt, "SUCCESS", result="stale")])
    assert "no longer ours" in caplog.text
    row = db.execute("SELECT state, worker, attempt FROM jobs WHERE id = %s",
                     [first.id]).fetchone()
    assert row == ("started", "worker-b", 2)
    assert db.execute("SELECT count(*) FROM results").fetchone() == (0,)


def test_heartbeat_extends_only_own_leases(app: App, db: psycopg.Connection[Any]) -> None:
    app.send_many("t.any", [[1], [2]])
    mine, theirs = _claim(app, "me", lease=5, limit=1), _claim(app, "them", lease=5, limit=1)
    holdings = Holdings()
    holdings.add(mine[0].id, mine[0].attempt)
    holdings.add(theirs[0].id, theirs[0].attempt)  # a wrong claim must not extend theirs
    Heartbeat(app.queries, "me", holdings, lease=600).run_once(
        Dedicated(app.dsn, app.schema, "t"))
    leases = dict(db.execute("SELECT worker, lease_expires_at - now() > interval '5 minutes' "
                             "FROM jobs").fetchall())
    assert leases == {"me": True, "them": False}


def test_leader_election_takes_over_after_ttl(app: App, db: psycopg.Connection[Any]) -> None:
    conn = Dedicated(app.dsn, app.schema, "t")
    a = LeaderElection(app.queries, "a", ttl=30)
    b = LeaderElection(app.queries, "b", ttl=30)
    a.run_once(conn)
    b.run_once(conn)
    assert a.is_leader and not b.is_leader
    a.run_once(conn)  # renewing keeps the term
    assert a.term == 1
    db.execute("UPDATE leader SET expires_at = now() - interval '1 second'")
    b.run_once(conn)
    assert b.is_leader and b.term == 2
    a.run_once(conn)
    assert not a.is_leader


def test_rescue_fails_job_once_retries_are_spent(app: App, db: psycopg.Connection[Any]) -> None:
    job = app.send_task("t.any", max_retries=1)
    conn = Dedicated(app.dsn, app.schema, "t")
    for _ in range(2):
        _claim(app, "doomed")
        _expire_leases(db)
        Rescuer(app.queries, 1.0).run_once(conn)
    assert job.state == "FAILURE"
    assert type(job.result).__name__ == "WorkerLostError"


def test_revoke_terminate_stops_a_running_thread_job(app: App) -> None:
    started = threading.Event()

    @app.task
    def spin() -> str:
        started.set()
        while True:
            time.sleep(0.01)

    with running_worker(app, concurrency=2):
        result = spin.delay()
        assert started.wait(10)
        result.revoke(terminate=True)
        wait_until(result.ready, timeout=10, message="revoked")
        assert result.state == "REVOKED"


def test_abort_reaches_running_task_and_ends_revoked(app: App) -> None:
    started = threading.Event()

    @app.task(bind=True, base=AbortableTask, autoretry_for=(Exception,))
    def patient(self: AbortableTask) -> str:
        started.set()
        while not self.is_aborted():
            time.sleep(0.01)
        raise RuntimeError("stopping; not retried because aborted")

    with running_worker(app):
        result = patient.delay()
        assert started.wait(10)
        AbortableAsyncResult(result.id, app=app).abort()
        wait_until(result.ready, timeout=20, message="aborted job final")
        assert result.state == "REVOKED"
        assert "aborted" in str(result.result)


def test_abort_before_start_revokes(app: App) -> None:
    @app.task(base=AbortableTask)
    def never() -> None:
        raise AssertionError("must not run")

    result = never.delay()
    AbortableAsyncResult(result.id, app=app).abort()
    assert result.state == "REVOKED"


def test_soft_time_limit_raises_inside_thread_task(app: App) -> None:
    @app.task(soft_time_limit=0.2)
    def slow() -> str:
        try:
            while True:
                time.sleep(0.01)
        except SoftTimeLimitExceeded:
            return "cleaned up"

    with running_worker(app):
        assert slow.delay().get(timeout=10) == "cleaned up"


def test_hard_time_limit_in_threads_fails_job_and_fences_late_outcome(app: App) -> None:
    release = threading.Event()

    @app.task(time_limit=0.3)
    def stuck() -> str:
        release.wait(10)
        return "late"

    with running_worker(app) as worker:
        result = stuck.delay()
        with pytest.raises(TimeLimitExceeded):
            result.get(timeout=10)
        assert worker.pool.abandoned == 1
        release.set()
        wait_until(lambda: worker.pool.abandoned == 0, message="the late return handled")
        assert result.state == "FAILURE"  # the late "late" was dropped
        assert worker.processed == 1  # and counted nowhere


def test_asyncio_pool_runs_coroutines_concurrently(app: App) -> None:
    running = {"now": 0, "peak": 0}
    all_in = asyncio.Event()

    @app.task
    async def nap(i: int) -> int:
        running["now"] += 1
        running["peak"] = max(running["peak"], running["now"])
        if running["now"] == 5:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), 10)  # holds until five run at once
        running["now"] -= 1
        return i

    with running_worker(app, pool="asyncio", concurrency=20):
        results = nap.apply_many([[i] for i in range(5)])
        assert [r.get(timeout=15) for r in results] == list(range(5))
    assert running["peak"] == 5


def test_process_pool_recycles_children(app: App) -> None:
    import os

    @app.task
    def pid() -> int:
        return os.getpid()

    with running_worker(app, pool="processes", concurrency=1, max_tasks_per_child=2):
        pids = [pid.delay().get(timeout=20) for _ in range(6)]
    assert len(set(pids)) == 3, pids


def test_forgetting_an_attempt_keeps_the_next_one() -> None:
    holdings = Holdings()
    holdings.add("job", 2)
    holdings.settle("job", 2)
    holdings.add("job", 3)  # re-claimed before attempt 2's retry was forgotten
    holdings.forget([("job", 2)])
    assert "job" in holdings
    assert holdings.settle("job", 3)
