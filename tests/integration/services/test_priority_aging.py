"""Priority aging: off by default; when on, a waiting job's priority steps up until it runs."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from pgqueue import App, ConfigurationError
from pgqueue.db import Dedicated
from pgqueue.services.aging import PriorityAging
from pgqueue.services.maintenance import optional_services
from tests.helpers import plan_scans, running_worker, wait_until


@pytest.fixture
def conn(app: App) -> Iterator[Dedicated]:
    connection = Dedicated(app.dsn, app.schema, "test", durable=False)
    yield connection
    connection.close()


def add_job(db: psycopg.Connection[Any], name: str, priority: int, waited: float,
            state: str = "queued", queue: str = "default") -> None:
    db.execute("""
        INSERT INTO jobs (id, queue, task, state, priority, run_at, options)
        VALUES (gen_random_uuid(), %s, %s, %s, %s, now() - make_interval(secs => %s),
                jsonb_build_object('name', %s::text))""",
               [queue, "t.x", state, priority, waited, name])


def priorities(db: psycopg.Connection[Any]) -> dict[str, tuple[int, Any]]:
    rows = db.execute("SELECT options->>'name', priority, options->'original_priority'"
                      " FROM jobs").fetchall()
    return {name: (priority, original) for name, priority, original in rows}


def test_the_aging_statement_reads_jobs_through_the_claim_index(
        app: App, db: psycopg.Connection[Any]) -> None:
    db.execute("""
        INSERT INTO jobs (id, queue, task, state, priority, run_at)
        SELECT gen_random_uuid(), 'q' || g % 5, 't.x', 'queued', g % 10,
               now() - g * interval '10 ms'
          FROM generate_series(1, 50000) g""")
    db.execute("ANALYZE jobs")
    scans = plan_scans(db, app.queries["job_age"], {"aging": 60.0, "limit": 1000})
    assert scans and not [node for node, _ in scans if "Seq Scan" in node], scans
    assert {relation for _, relation in scans} == {"jobs"}


def test_a_run_raises_each_waiting_job_to_the_steps_it_waited_and_keeps_its_own(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    """With 60 s steps: a job that waited 2.5 steps runs at 2 or more, one that waited
    100 at 9; a job already above its steps, and jobs not queued, are left alone."""
    for name, priority, waited, state in [
        ("fresh", 0, 30, "queued"), ("two-steps", 0, 150, "queued"),
        ("high-enough", 3, 150, "queued"), ("five-steps", 3, 312, "queued"),
        ("forever", 0, 6000, "queued"), ("top", 9, 6000, "queued"),
        ("waiting-for-eta", 0, 6000, "scheduled"), ("retry", 1, 6000, "retry"),
    ]:
        add_job(db, name, priority, waited, state)
    aging = PriorityAging(app.queries, 60.0)
    assert aging.run_once(conn) == aging.interval
    assert aging.aged == 3
    assert priorities(db) == {
        "fresh": (0, None), "two-steps": (2, 0), "high-enough": (3, None),
        "five-steps": (5, 3), "forever": (9, 0), "top": (9, None),
        "waiting-for-eta": (0, None), "retry": (1, None)}
    # a second run, later, keeps the first original priority
    db.execute("UPDATE jobs SET run_at = run_at - interval '120 s'")
    aging.run_once(conn)
    assert priorities(db)["two-steps"] == (4, 0)
    assert priorities(db)["five-steps"] == (7, 3)


def test_a_run_ages_in_batches_across_queues(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    for n in range(7):
        add_job(db, f"j{n}", n % 3, 1000, queue=f"q{n % 3}")
    aging = PriorityAging(app.queries, 60.0, batch=3, run_seconds=0)
    delays = [aging.run_once(conn) for _ in range(3)]
    assert delays[0] < aging.interval and delays[1] < aging.interval
    assert delays[2] == aging.interval
    assert {p for p, _ in priorities(db).values()} == {9}


def test_aging_is_off_by_default(app: App) -> None:
    assert app.conf.priority_aging is None
    assert optional_services(app) == []
    app.conf.priority_aging = timedelta(minutes=5)
    (service,) = optional_services(app)
    assert isinstance(service, PriorityAging)
    assert service.aging == 300 and service.interval == 30


@pytest.mark.parametrize("value", [-1, 0, math.nan, math.inf, 1e300, "60", True, [60],
                                   timedelta(seconds=-5)])
def test_hostile_aging_settings_are_refused_in_one_line(app: App, value: Any) -> None:
    with pytest.raises(ConfigurationError) as error:
        app.conf.priority_aging = value
    message = str(error.value)
    assert "\n" not in message and "'priority_aging'" in message and "None (off)" in message
    assert app.conf.priority_aging is None


@contextmanager
def stream_of_high_priority_jobs(app: App, backlog: int = 100) -> Iterator[None]:
    """Keeps about ``backlog`` new priority-5 jobs queued until the block ends: enough
    that the worker does not run out while this thread waits for the CPU."""
    stop, flowing = threading.Event(), threading.Event()

    def top_up() -> None:
        with psycopg.connect(app.dsn, autocommit=True) as watch:
            while not stop.is_set():
                row = watch.execute(f'SELECT count(*) FROM "{app.schema}".jobs'
                                    " WHERE task = 'a.high' AND state = 'queued'").fetchone()
                if row and row[0] < backlog:
                    app.send_many("a.high", [()] * backlog, priority=5)
                flowing.set()
                stop.wait(0.02)

    thread = threading.Thread(target=top_up, name="high-priority-stream", daemon=True)
    thread.start()
    try:
        assert flowing.wait(10), "the stream did not start"
        yield
    finally:
        stop.set()
        thread.join(10)


def register(app: App) -> Any:
    @app.task(name="a.high")
    def high() -> None:
        threading.Event().wait(0.005)

    @app.task(name="a.low")
    def low() -> None:
        pass

    return low


def test_with_aging_a_low_priority_job_runs_under_a_stream_of_higher_ones(
        app: App, db: psycopg.Connection[Any]) -> None:
    low = register(app)
    app.conf.priority_aging = 0.2
    # A deep backlog: the low job needs 7 periods plus the leader's step (~2.4 s), and the
    # stream must not run dry meanwhile on a loaded machine, or it would run unaged.
    with running_worker(app, concurrency=1), stream_of_high_priority_jobs(app, backlog=600):
        result = low.apply_async(priority=0)
        # Every queued job ages to 9 within 2 s, after which the low job waits behind the
        # backlog sent before it: as long as the worker takes to run ~600 jobs when loaded.
        wait_until(lambda: result.ready(), timeout=120, message="the low-priority job to run")
        overtaken = db.execute("""
            SELECT count(*) FROM jobs j, results r
             WHERE r.id = %s AND j.task = 'a.high' AND j.state = 'queued'
               AND j.created_at < r.started_at""", [result.id]).fetchone()[0]
    assert result.state == "SUCCESS"
    assert overtaken > 0  # it ran while jobs of priority 5 sent before it started waited
    assert db.execute("SELECT priority FROM results WHERE id = %s",
                      [result.id]).fetchone()[0] >= 6


def test_without_aging_priorities_are_left_alone(
        app: App, db: psycopg.Connection[Any]) -> None:
    low = register(app)
    with running_worker(app, concurrency=1), stream_of_high_priority_jobs(app):
        result = low.apply_async(priority=0)
        sent_at = db.execute("SELECT created_at FROM jobs WHERE id = %s",
                             [result.id]).fetchone()[0]
        wait_until(lambda: db.execute(
            "SELECT count(*) FROM results WHERE task = 'a.high' AND created_at > %s",
            [sent_at]).fetchone()[0] >= 150,
                   timeout=30, message="150 later jobs of priority 5 to run")
        assert not result.ready()
    assert db.execute("SELECT priority, options ? 'original_priority' FROM jobs"
                      " WHERE id = %s", [result.id]).fetchone() == (0, False)
    assert db.execute("SELECT count(*) FROM jobs WHERE priority <> 5 AND task = 'a.high'"
                      " OR options ? 'original_priority'").fetchone()[0] == 0
