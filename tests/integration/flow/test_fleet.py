"""Limits that hold for a fleet: three real `pgqueue worker` processes claim from one
schema, and the rows say what each limit allowed (results.started_at, the moment of
the claim; and the spans the tasks record themselves with the database's clock)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import App
from tests.acceptance.procs import WorkerProcess, workers
from tests.conftest import wait_until

pytestmark = pytest.mark.acceptance

APPS = Path(__file__).resolve().parent / "apps"


@pytest.fixture
def fleet_app(pg_dsn: str, schema: str, db: psycopg.Connection[Any]) -> Iterator[App]:
    db.execute("CREATE TABLE spans (job_id uuid, key text, started timestamptz, "
               "ended timestamptz, pid integer)")
    application = App("flow", dsn=pg_dsn, schema=schema)
    yield application
    application.close()


def start_fleet(started: list[WorkerProcess], pg_dsn: str, schema: str, *args: str,
                count: int = 3) -> None:
    for _ in range(count):
        started.append(WorkerProcess(pg_dsn, schema, "flow_tasks", "-c", "4", *args,
                                     apps_dir=APPS))
    for worker in started:
        worker.wait_ready(60)


def finished(db: psycopg.Connection[Any], task: str) -> int:
    return int(db.execute("SELECT count(*) FROM results WHERE task = %s",
                          [task]).fetchone()[0])


def most_at_once(spans: list[tuple[Any, Any]]) -> int:
    """The largest number of spans open at one instant."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans],
                   key=lambda edge: (edge[0], edge[1]))  # an end before a start at a tie
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def test_a_rate_limit_holds_across_three_workers(
        fleet_app: App, pg_dsn: str, schema: str, db: psycopg.Connection[Any]) -> None:
    """20/s over 400 jobs: no 1-second window holds more than 21 starts, the whole run
    takes at least 18 s, and at most twice 20 s (a limiter that halves the rate fails; a
    loaded CI machine whose workers fall behind the rate does not)."""
    with workers() as started:
        start_fleet(started, pg_dsn, schema)
        fleet_app.send_many("flow_tasks.limited", [[i] for i in range(400)])
        wait_until(lambda: finished(db, "flow_tasks.limited") == 400, timeout=90,
                   interval=0.2, message="400 rate-limited jobs")
    starts = [row[0] for row in db.execute(
        "SELECT extract(epoch FROM started_at)::float8 FROM results "
        "WHERE task = 'flow_tasks.limited' ORDER BY started_at").fetchall()]
    # Every window [t, t + 1 s) that starts at a start holds the most of its length.
    worst = 0
    j = 0
    for i, t in enumerate(starts):
        while j < len(starts) and starts[j] < t + 1.0:
            j += 1
        worst = max(worst, j - i)
    assert worst <= 21, f"a 1-second window held {worst} starts"
    took = starts[-1] - starts[0]
    assert 18.0 <= took <= 40.0, f"400 starts at 20/s took {took:.1f}s"
    assert len({row[0] for row in db.execute(
        "SELECT worker FROM results WHERE task = 'flow_tasks.limited'")}) >= 2


def test_queue_and_key_concurrency_hold_across_three_workers(
        fleet_app: App, pg_dsn: str, schema: str, db: psycopg.Connection[Any]) -> None:
    """queue_concurrency={"narrow": 3}: never more than 3 running; keyed(concurrency_limit=1):
    no two jobs of one key overlap, while other keys run beside them."""
    with workers() as started:
        start_fleet(started, pg_dsn, schema, "-Q", "narrow,default")
        fleet_app.send_many("flow_tasks.span", [["narrow", 150]] * 24, queue="narrow")
        for _ in range(8):
            for key in ("user:1", "user:2", "user:3"):
                fleet_app.send_task("flow_tasks.keyed", [key, 100], concurrency_key=key)
        wait_until(lambda: finished(db, "flow_tasks.span") == 24
                   and finished(db, "flow_tasks.keyed") == 24, timeout=90, interval=0.2,
                   message="narrow and keyed jobs")
    narrow = db.execute("SELECT started, ended FROM spans WHERE key = 'narrow'").fetchall()
    assert most_at_once(narrow) == 3  # the limit, and reached: the fleet is not serialised
    for key in ("user:1", "user:2", "user:3"):
        spans = db.execute("SELECT started, ended FROM spans WHERE key = %s",
                           [key]).fetchall()
        assert len(spans) == 8
        assert most_at_once(spans) == 1, f"two jobs of {key} overlapped"
    keyed = db.execute("SELECT started, ended FROM spans WHERE key LIKE 'user:%'").fetchall()
    assert most_at_once(keyed) >= 2  # one busy key does not hold the others back


def test_pause_stops_starts_within_a_second_and_resume_restarts_them(
        fleet_app: App, pg_dsn: str, schema: str, db: psycopg.Connection[Any]) -> None:
    with workers() as started:
        start_fleet(started, pg_dsn, schema)
        fleet_app.send_many("flow_tasks.span", [["p", 50]] * 40)
        wait_until(lambda: finished(db, "flow_tasks.span") >= 4, timeout=30)
        fleet_app.control.pause_queue("default")
        paused_at = db.execute("SELECT now()").fetchone()[0]
        fleet_app.send_many("flow_tasks.span", [["p", 50]] * 10)
        # Every worker has read the pause when a claim after it would have run: wait for
        # the running jobs to end and for two refresh periods of the limits.
        wait_until(lambda: db.execute(
            "SELECT count(*) FROM jobs WHERE state = 'started'").fetchone()[0] == 0,
            timeout=30)
        deadline = db.execute("SELECT now() + interval '4 seconds'").fetchone()[0]
        wait_until(lambda: db.execute("SELECT now() > %s", [deadline]).fetchone()[0],
                   timeout=20)
        # A second's refresh (the NOTIFY is sooner) plus a second for a loaded machine's
        # claim already under way.
        late = db.execute("SELECT count(*) FROM results WHERE started_at > %s::timestamptz "
                          "+ interval '2 seconds'", [paused_at]).fetchone()[0]
        assert late == 0
        waiting = db.execute("SELECT count(*) FROM jobs WHERE state = 'queued'").fetchone()[0]
        assert waiting >= 10
        listed = {q.name: q for q in fleet_app.control.queues()}
        assert listed["default"].paused and listed["default"].queued == waiting
        resumed_at = time.monotonic()
        fleet_app.control.resume_queue("default")
        wait_until(lambda: finished(db, "flow_tasks.span") == 50, timeout=60,
                   message="jobs after resume")
        assert time.monotonic() - resumed_at < 30


def test_a_killed_workers_slots_come_back_when_its_jobs_are_rescued(
        fleet_app: App, pg_dsn: str, schema: str, db: psycopg.Connection[Any]) -> None:
    """The queue limit counts started jobs: a SIGKILLed worker's jobs hold their slots
    until the rescuer requeues them (their lease ran out), then every job ends."""
    with workers() as started:
        # The victim starts alone, so it surely holds slots when killed: with both up,
        # the other worker may take every slot of the narrow queue each time.
        start_fleet(started, pg_dsn, schema, "-Q", "narrow", "--lease", "2", count=1)
        victim = started[0]
        fleet_app.send_many("flow_tasks.span", [["narrow", 400]] * 9, queue="narrow")
        wait_until(lambda: db.execute(
            "SELECT count(*) FROM jobs WHERE state = 'started' AND worker LIKE %s",
            [f"%:{victim.pid}:%"]).fetchone()[0] > 0, timeout=30,
            message="the victim holding jobs")
        victim.signal(signal.SIGKILL)
        survivor: list[WorkerProcess] = []
        try:
            start_fleet(survivor, pg_dsn, schema, "-Q", "narrow", "--lease", "2", count=1)
        finally:
            started.extend(survivor)  # stopped with the others
        wait_until(lambda: finished(db, "flow_tasks.span") == 9, timeout=60, interval=0.2,
                   message="every job, after the rescue")
    narrow = db.execute("SELECT started, ended FROM spans WHERE key = 'narrow'").fetchall()
    assert most_at_once(narrow) <= 3
