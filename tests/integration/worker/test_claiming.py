"""Claim cursors: claims that skip the dead start of the claim index under an old snapshot."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from pgqueue import App
from pgqueue.db.connection import Dedicated
from pgqueue.worker import claiming
from pgqueue.worker.claiming import FROM_START, ClaimCursors
from pgqueue.worker.execution import ClaimedJob
from tests.conftest import running_worker, wait_until


class Claimer:
    """The worker's claim step (``ClaimCursors.claim``) on a connection of its own."""

    def __init__(self, app: App, rescan_interval: float = 60.0,
                 slow_rescan: float = 60.0) -> None:
        self.app = app
        self.db = Dedicated(app.dsn, app.schema, "test", indexed_plans=True)
        self.cursors = ClaimCursors(["default"], rescan_interval=rescan_interval,
                                    slow_rescan=slow_rescan)

    def claim(self, limit: int) -> list[int]:
        jobs = self.cursors.claim(self.db, self.app.queries, limit, "test-worker", 30.0)
        return [job.kwargs["n"] for job in jobs]


@pytest.fixture
def claimer(app: App) -> Iterator[Claimer]:
    claimer = Claimer(app)
    yield claimer
    claimer.db.close()


def send(app: App, n: int, **options: Any) -> None:
    app.send_task("t.n", kwargs={"n": n}, **options)


def earlier() -> dict[str, Any]:
    """Options of a job that sorts before every job sent without them."""
    return {"eta": datetime.now(timezone.utc) - timedelta(minutes=5)}


@pytest.mark.parametrize("slow", [False, True], ids=["fast-rescans", "slow-rescans"])
def test_after_a_short_claim_the_next_one_reads_from_the_start_unless_that_is_slow(
        app: App, slow: bool) -> None:
    """After a short claim the next one reads from the start, and so finds a job that
    sorts before the last one claimed. While claims from the start are slow (a dead
    prefix; here every one counts as slow) it starts after the cursor instead, and the
    next claim from the start, a rescan interval later, finds that job."""
    claimer = Claimer(app, rescan_interval=4.0, slow_rescan=0.0 if slow else 60.0)
    try:
        send(app, 1)
        assert claimer.claim(5) == [1]
        assert not claimer.cursors.in_backlog
        assert claimer.cursors.rescans_slow is slow
        send(app, 2)
        send(app, 0, **earlier())
        if not slow:
            assert claimer.claim(5) == [0, 2]
            return
        assert claimer.claim(5) == [2]  # after the cursor: job 0 is not read yet
        time.sleep(max(0.0, claimer.cursors.next_rescan - time.monotonic()))
        assert claimer.claim(5) == [0]
    finally:
        claimer.db.close()


def test_in_a_backlog_a_claim_starts_after_the_last_claimed_job(
        app: App, claimer: Claimer) -> None:
    for n in range(1, 6):
        send(app, n)
    assert claimer.claim(2) == [1, 2]
    assert claimer.cursors.in_backlog
    send(app, 0, **earlier())  # before the cursor
    send(app, 9, priority=9)  # a higher priority is read from its own start
    assert claimer.claim(2) == [9, 3]
    assert claimer.claim(10) == [4, 5]  # job 0 sorts before the cursor: not seen yet
    assert claimer.claim(10) == [0]  # the last claim fell short: this one is from the start


def test_a_backlog_still_reads_from_the_start_every_rescan_interval(app: App) -> None:
    claimer = Claimer(app, rescan_interval=4.0)  # long enough for the steps before it, loaded
    try:
        for n in range(1, 10):
            send(app, n)
        assert claimer.claim(1) == [1]
        send(app, 0, **earlier())
        assert claimer.claim(1) == [2]
        # The contract under test is time-based: at least one rescan interval later (more
        # if the last claim from the start was slow) a claim reads from the start again.
        time.sleep(max(0.0, claimer.cursors.next_rescan - time.monotonic()))
        assert claimer.claim(1) == [0]
        assert claimer.claim(1) == [3]
    finally:
        claimer.db.close()


def test_lower_priorities_follow_when_the_cursor_level_runs_out(app: App,
                                                                claimer: Claimer) -> None:
    send(app, 1, priority=5)
    send(app, 2, priority=5)
    send(app, 3, priority=1)
    assert claimer.claim(1) == [1]
    assert claimer.claim(5) == [2, 3]


def test_both_claim_statements_claim_the_same_jobs_in_the_same_order(
        app: App, db: psycopg.Connection[Any]) -> None:
    """An idle worker of one queue claims with the lighter statement; it must pick
    exactly what the general claim picks: priority first, then run_at, then id, and
    only from its own queue."""
    position = claiming.from_start(["default"])
    assert claiming.statement(position) == "job_claim_one_queue"
    assert claiming.statement(claiming.from_start(["default", "other"])) == "job_claim"
    cursors = ClaimCursors(["default"])
    cursors.in_backlog = True
    cursors.claimed(position, 1, [], 0.0)  # an empty claim leaves no cursor: from start
    assert claiming.statement(cursors.params()) == "job_claim_one_queue"

    claimer = Dedicated(app.dsn, app.schema, "test", indexed_plans=True)
    try:
        picked = {}
        for name in ("job_claim_one_queue", "job_claim"):
            for n, priority in [(1, 0), (2, 5), (3, 0), (4, 9), (5, 5)]:
                send(app, n, priority=priority)
            send(app, 0, **earlier())
            app.send_task("t.n", kwargs={"n": 99}, queue="other", priority=9)
            rows = claimer.execute(app.queries[name], {
                **position, "limit": 4, "worker": "test-worker", "lease": 30.0})
            jobs = ClaimCursors(["default"]).claimed(
                position, 4, [ClaimedJob.from_row(r) for r in rows], 0.0)
            picked[name] = [job.kwargs["n"] for job in jobs]
            db.execute("DELETE FROM jobs")
    finally:
        claimer.close()
    assert picked["job_claim_one_queue"] == picked["job_claim"] == [4, 2, 5, 0]


def test_a_worker_under_an_old_snapshot_runs_every_job(
        app: App, pg_dsn: str) -> None:
    """With an old snapshot held open, the worker claims by cursor and still runs every
    job, including one that commits after later jobs were claimed."""
    done: list[int] = []

    @app.task(name="t.n", ignore_result=True)
    def record(n: int) -> None:
        done.append(n)

    with psycopg.connect(pg_dsn, autocommit=True) as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT txid_current()")
        late = psycopg.connect(pg_dsn)  # a sender whose transaction starts first
        app.send_task("t.n", kwargs={"n": -1}, connection=late)
        with running_worker(app, concurrency=4, poll_interval=0.2) as worker:
            positions: list[dict[str, Any]] = []
            params = worker.cursors.params

            def recorded() -> dict[str, Any]:
                positions.append(params())
                return positions[-1]

            worker.cursors.params = recorded  # type: ignore[method-assign]
            app.send_many("t.n", [((), {"n": n}) for n in range(200)])
            wait_until(lambda: len(done) == 200, timeout=30, message="200 jobs ran")
            assert any(p["after_priority"] != [FROM_START] for p in positions)
            late.commit()  # its run_at is older than every job claimed so far
            wait_until(lambda: -1 in done, timeout=10, message="the late job ran")
        late.close()
        holder.execute("ROLLBACK")
    assert sorted(done) == list(range(-1, 200))
