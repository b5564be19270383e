"""The scheduler service against real Postgres, with a clock the tests control."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from pgqueue import App, ConfigurationError, crontab
from pgqueue.db.connection import Dedicated
from pgqueue.services.beat import Beat
from pgqueue.services.scheduler import Scheduler
from tests.conftest import running_worker, wait_until

UTC = timezone.utc
START = datetime(2026, 5, 4, 12, 0, 0, 400000, tzinfo=UTC)  # a Monday


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def conn(app: App) -> Any:
    connection = Dedicated(app.dsn, app.schema, "test-scheduler")
    yield connection
    connection.close()


def jobs(db: psycopg.Connection[Any], name: str | None = None) -> list[str]:
    """Unique keys of the jobs schedules sent, live or finished, oldest fire first."""
    rows = db.execute(
        "SELECT unique_key FROM jobs WHERE unique_key LIKE %(p)s UNION ALL "
        "SELECT unique_key FROM results WHERE unique_key LIKE %(p)s ORDER BY 1",
        {"p": f"beat:{name}:%" if name else "beat:%"}).fetchall()
    return [r[0] for r in rows]


def schedule_row(db: psycopg.Connection[Any], name: str) -> dict[str, Any]:
    cur = db.execute("SELECT * FROM schedules WHERE name = %s", [name])
    row = cur.fetchone()
    assert row is not None, name
    return dict(zip([c.name for c in cur.description or []], row, strict=True))


def start(app: App, conn: Dedicated, clock: Clock, **kwargs: Any) -> Scheduler:
    """A scheduler that has written the code's schedules (its first run)."""
    scheduler = Scheduler(app, clock=clock, **kwargs)
    assert scheduler.run_once(conn) == 0.0
    return scheduler


def key(name: str, fire: datetime) -> str:
    return f"beat:{name}:{fire.isoformat()}"


def test_code_schedules_are_written_when_the_scheduler_starts(
        app: App, db: psycopg.Connection[Any], conn: Dedicated, clock: Clock) -> None:
    @app.task(name="t.ping")
    def ping() -> None: ...

    app.conf.beat_schedule = {"every-10": {"task": "t.ping", "schedule": 10.0, "args": [1]}}
    app.add_periodic_task(crontab(minute=30, hour=7, day_of_week=1), ping.s(), name="monday",
                          timezone="Europe/Berlin")
    start(app, conn, clock)
    every = schedule_row(db, "every-10")
    assert every["every"] == timedelta(seconds=10) and every["cron"] is None
    assert every["next_run_at"] == datetime(2026, 5, 4, 12, 0, 10, tzinfo=UTC)
    assert (every["source"], every["enabled"], every["args"]) == ("code", True, [1])
    monday = schedule_row(db, "monday")
    assert (monday["cron"], monday["timezone"]) == ("30 7 * * 1", "Europe/Berlin")
    assert monday["next_run_at"] == datetime(2026, 5, 11, 5, 30, tzinfo=UTC)  # 07:30 CEST
    assert jobs(db) == []


def test_each_fire_sends_one_job_and_keeps_the_counters(
        app: App, db: psycopg.Connection[Any], conn: Dedicated, clock: Clock) -> None:
    @app.task(name="t.ping")
    def ping() -> None: ...

    app.add_periodic_task(1.0, ping.s(), name="tick")
    scheduler = start(app, conn, clock)
    first = datetime(2026, 5, 4, 12, 0, 1, tzinfo=UTC)
    assert 0 < scheduler.run_once(conn) <= 1.0  # nothing due yet
    for n in range(1, 4):
        clock.advance(seconds=1)
        scheduler.run_once(conn)
        row = schedule_row(db, "tick")
        assert (row["total_run_count"], row["last_run_at"]) == (n, clock.now)
        assert row["next_run_at"] == first + timedelta(seconds=n)
    assert jobs(db) == [key("tick", first + timedelta(seconds=i)) for i in range(3)]
    job = db.execute("SELECT task, state, queue FROM jobs LIMIT 1").fetchone()
    assert job == ("t.ping", "queued", "default")


def test_two_schedulers_racing_insert_each_fire_once(
        app: App, db: psycopg.Connection[Any], clock: Clock) -> None:
    @app.task(name="t.ping")
    def ping() -> None: ...

    app.conf.beat_schedule = {
        "tick": {"task": "t.ping", "schedule": 1.0},
        "minutely": {"task": "t.ping", "schedule": crontab()},
    }
    connections = [Dedicated(app.dsn, app.schema, f"racer{i}") for i in range(3)]
    # Skewed clocks too: the racers disagree on the time by a fraction of a second.
    clocks = [clock, lambda: clock.now + timedelta(milliseconds=300),
              lambda: clock.now - timedelta(milliseconds=200)]
    racers = [Scheduler(app, clock=c) for c in clocks]
    barrier = threading.Barrier(len(racers))
    errors: list[BaseException] = []

    def race(i: int) -> None:
        try:
            barrier.wait(10)
            racers[i].run_once(connections[i])
        except BaseException as error:  # surfaced below
            errors.append(error)

    try:
        for _ in range(130):  # two minutes and ten seconds of fires, all three racing
            threads = [threading.Thread(target=race, args=(i,)) for i in range(len(racers))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
            assert not errors, errors
            clock.advance(seconds=1)
    finally:
        for connection in connections:
            connection.close()
    ticks = jobs(db, "tick")
    assert len(ticks) == len(set(ticks)) >= 125
    minutes = jobs(db, "minutely")
    assert minutes == [key("minutely", datetime(2026, 5, 4, 12, m, tzinfo=UTC)) for m in (1, 2)]
    counts = dict(db.execute("SELECT name, total_run_count FROM schedules").fetchall())
    assert counts == {"tick": len(ticks), "minutely": 2}


def test_missed_fires_after_downtime_run_once(
        app: App, db: psycopg.Connection[Any], conn: Dedicated, clock: Clock,
        caplog: pytest.LogCaptureFixture) -> None:
    @app.task(name="t.ping")
    def ping() -> None: ...

    app.conf.beat_schedule = {"tick": {"task": "t.ping", "schedule": 1.0},
                              "hourly": {"task": "t.ping", "schedule": crontab(minute=0)}}
    scheduler = start(app, conn, clock)
    clock.advance(hours=5, seconds=2.3)  # down for five hours
    with caplog.at_level(logging.INFO, logger="pgqueue.beat"):
        scheduler.run_once(conn)
    latest_tick = datetime(2026, 5, 4, 17, 0, 2, tzinfo=UTC)
    assert jobs(db, "tick") == [key("tick", latest_tick)]
    assert jobs(db, "hourly") == [key("hourly", datetime(2026, 5, 4, 17, tzinfo=UTC))]
    assert schedule_row(db, "tick")["next_run_at"] == latest_tick + timedelta(seconds=1)
    assert schedule_row(db, "hourly")["next_run_at"] == datetime(2026, 5, 4, 18, tzinfo=UTC)
    assert schedule_row(db, "hourly")["total_run_count"] == 1
    assert "coalescing the fires missed since" in caplog.text


def test_catch_up_off_skips_missed_fires_but_not_a_late_one(
        app: App, db: psycopg.Connection[Any], conn: Dedicated, clock: Clock) -> None:
    @app.task(name="t.ping")
    def ping() -> None: ...

    app.conf.update(beat_catch_up=False, leader_ttl_seconds=3, beat_max_loop_interval=1)
    app.conf.beat_schedule = {"daily": {"task": "t.ping", "schedule": crontab(0, 3)}}
    scheduler = start(app, conn, clock)
    clock.now = datetime(2026, 5, 6, 9, tzinfo=UTC)  # two 03:00 fires missed
    scheduler.run_once(conn)
    assert jobs(db) == []
    assert schedule_row(db, "daily")["next_run_at"] == datetime(2026, 5, 7, 3, tzinfo=UTC)
    clock.now = datetime(2026, 5, 7, 3, 0, 3, tzinfo=UTC)  # late by a failover: still runs
    scheduler.run_once(conn)
    assert jobs(db) == [key("daily", datetime(2026, 5, 7, 3, tzinfo=UTC))]


def test_daily_berlin_job_across_both_dst_changes_of_2026(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    @app.task(name="t.ping")
    def ping() -> None: ...

    app.conf.timezone = "Europe/Berlin"
    app.conf.beat_schedule = {"nightly": {"task": "t.ping", "schedule": crontab(30, 2)}}
    for first_day, fires in [
        (datetime(2026, 3, 28, tzinfo=UTC), ["2026-03-28T01:30:00+00:00",
                                             "2026-03-29T01:00:00+00:00",
                                             "2026-03-30T00:30:00+00:00"]),
        (datetime(2026, 10, 24, tzinfo=UTC), ["2026-10-24T00:30:00+00:00",
                                              "2026-10-25T00:30:00+00:00",
                                              "2026-10-26T01:30:00+00:00"]),
    ]:
        db.execute("DELETE FROM schedules")
        db.execute("DELETE FROM jobs")
        clock = Clock(first_day)
        scheduler = start(app, conn, clock)
        while clock.now < first_day + timedelta(days=3):
            clock.advance(minutes=5)
            scheduler.run_once(conn)
        assert jobs(db, "nightly") == [f"beat:nightly:{f}" for f in fires]


def test_database_schedule_without_a_first_fire_time_is_started(
        app: App, db: psycopg.Connection[Any], conn: Dedicated, clock: Clock) -> None:
    db.execute("INSERT INTO schedules (name, task, cron) VALUES ('sql', 'any.task', "
               "'*/5 * * * *')")
    scheduler = Scheduler(app, code_schedules=False, clock=clock)
    scheduler.run_once(conn)
    scheduler.run_once(conn)
    assert schedule_row(db, "sql")["next_run_at"] == datetime(2026, 5, 4, 12, 5, tzinfo=UTC)
    clock.advance(minutes=5)
    scheduler.run_once(conn)
    assert jobs(db) == [key("sql", datetime(2026, 5, 4, 12, 5, tzinfo=UTC))]
    assert db.execute("SELECT task FROM jobs").fetchone() == ("any.task",)


def test_invalid_database_schedule_is_disabled_with_an_error(
        app: App, db: psycopg.Connection[Any], conn: Dedicated, clock: Clock,
        caplog: pytest.LogCaptureFixture) -> None:
    db.execute("INSERT INTO schedules (name, task, cron, timezone) VALUES "
               "('broken', 'any.task', '99 * * * *', 'UTC'), "
               "('far', 'any.task', '0 * * * *', 'Mars/Base')")
    scheduler = Scheduler(app, code_schedules=False, clock=clock)
    with caplog.at_level(logging.ERROR, logger="pgqueue.beat"):
        scheduler.run_once(conn)
        scheduler.run_once(conn)
    assert "Schedule 'broken' is invalid and was disabled: crontab minute='99'" in caplog.text
    assert "unknown time zone 'Mars/Base'" in caplog.text
    assert db.execute("SELECT bool_or(enabled) FROM schedules").fetchone() == (False,)


def test_database_schedules_under_names_no_command_accepts_are_disabled_the_rest_run(
        app: App, db: psycopg.Connection[Any], conn: Dedicated, clock: Clock,
        caplog: pytest.LogCaptureFixture) -> None:
    hostile = ["x" * 201, "night\nly", "\x1b[2J", ""]
    db.execute("INSERT INTO schedules (name, task, every) SELECT n, 'any.task', '1 minute' "
               "FROM unnest(%s::text[]) n", [[*hostile, "fine"]])
    scheduler = Scheduler(app, code_schedules=False, clock=clock)
    with caplog.at_level(logging.ERROR, logger="pgqueue.beat"):
        for _ in range(5):
            scheduler.run_once(conn)
            clock.advance(minutes=1)
    assert jobs(db) == [key("fine", datetime(2026, 5, 4, 12, m, tzinfo=UTC)) for m in (2, 3, 4)]
    assert db.execute("SELECT name FROM schedules WHERE enabled").fetchall() == [("fine",)]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == len(hostile)  # one line each, once: disabled, not retried
    for error in errors:
        assert "\n" not in error and len(error) < 400
        assert "is invalid and was disabled: schedule name must be a string of 1 to 200 " \
               "characters without control characters" in error
        assert "rename it by SQL or remove it with `pgqueue schedule remove`" in error
    assert "(201 characters)" in caplog.text and r"'night\nly'" in caplog.text


def test_a_bad_name_in_beat_schedule_stops_the_scheduler_before_it_writes(
        app: App, db: psycopg.Connection[Any], conn: Dedicated, clock: Clock) -> None:
    @app.task(name="t.ping")
    def ping() -> None: ...

    app.conf.beat_schedule = {"fine": {"task": "t.ping", "schedule": 10.0},
                              "y" * 201: {"task": "t.ping", "schedule": 10.0}}
    with pytest.raises(ConfigurationError, match=r"^schedule name must be a string of 1 to "
                                                 r"200 characters .*\(201 characters\)$"):
        Scheduler(app, clock=clock)
    assert db.execute("SELECT count(*) FROM schedules").fetchone() == (0,)


def test_sync_keeps_fire_times_and_operator_choices(
        app: App, db: psycopg.Connection[Any], conn: Dedicated, clock: Clock) -> None:
    @app.task(name="t.ping")
    def ping() -> None: ...

    app.conf.beat_schedule = {"a": {"task": "t.ping", "schedule": 10.0},
                              "b": {"task": "t.ping", "schedule": 10.0},
                              "gone": {"task": "t.ping", "schedule": 10.0}}
    start(app, conn, clock)
    db.execute("UPDATE schedules SET enabled = false WHERE name = 'a'")
    db.execute("INSERT INTO schedules (name, task, every, next_run_at) VALUES "
               "('from-cli', 'x', '1 minute', now())")
    before = schedule_row(db, "a")["next_run_at"]
    clock.advance(seconds=3)
    app.conf.beat_schedule = {"a": {"task": "t.ping", "schedule": 10.0, "args": [2]},
                              "b": {"task": "t.ping", "schedule": 20.0}}
    start(app, conn, clock)
    a, b = schedule_row(db, "a"), schedule_row(db, "b")
    assert (a["args"], a["enabled"], a["next_run_at"]) == ([2], False, before)
    assert b["next_run_at"] == datetime(2026, 5, 4, 12, 0, 23, tzinfo=UTC)  # new timetable
    names = {r[0] for r in db.execute("SELECT name FROM schedules").fetchall()}
    assert names == {"a", "b", "from-cli"}


def test_a_finished_fire_is_not_sent_again(
        app: App, db: psycopg.Connection[Any], conn: Dedicated, clock: Clock) -> None:
    @app.task(name="t.ping")
    def ping() -> str:
        return "pong"

    app.conf.beat_schedule = {"tick": {"task": "t.ping", "schedule": 60.0}}
    scheduler = start(app, conn, clock)
    clock.advance(seconds=60)
    scheduler.run_once(conn)
    with running_worker(app):
        wait_until(lambda: db.execute("SELECT count(*) FROM results").fetchone() == (1,),
                   message="the fire's job to finish")
    fire = datetime(2026, 5, 4, 12, 1, tzinfo=UTC)
    # Someone sets the schedule back to a fire time whose job already ran.
    db.execute("UPDATE schedules SET next_run_at = %s", [fire])
    scheduler.run_once(conn)
    assert jobs(db) == [key("tick", fire)]
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def test_worker_with_beat_runs_schedules(app: App, db: psycopg.Connection[Any]) -> None:
    seen: list[int] = []

    @app.task(name="t.count")
    def count(n: int) -> int:
        seen.append(n)
        return n

    app.conf.beat_schedule = {"count": {"task": "t.count", "schedule": 0.5, "args": [7]}}
    with running_worker(app, beat=True) as worker:
        wait_until(lambda: len(seen) >= 2, timeout=15, message="two scheduled runs")
        assert worker.maintenance.election.is_leader
    states = db.execute("SELECT DISTINCT task, state, result FROM results").fetchall()
    assert states == [("t.count", "SUCCESS", 7)]


def test_schedules_fire_while_a_worker_without_beat_holds_the_lease(
        app: App, pg_dsn: str, schema: str, db: psycopg.Connection[Any]) -> None:
    plain = App("plain", dsn=pg_dsn, schema=schema)  # every worker campaigns for the lease
    try:
        with running_worker(plain) as worker:
            wait_until(lambda: worker.maintenance.election.is_leader, message="worker leads")

            @app.task(name="t.ping")
            def ping() -> None: ...

            app.conf.beat_schedule = {"tick": {"task": "t.ping", "schedule": 0.5}}
            beat = Beat(app, install_signal_handlers=False)
            thread = threading.Thread(target=beat.run, daemon=True)
            thread.start()
            try:
                wait_until(lambda: len(jobs(db, "tick")) >= 2, timeout=15,
                           message="fires while a plain worker leads")
                assert db.execute("SELECT holder FROM leader").fetchone() == (worker.worker_id,)
            finally:
                beat.stop()
                thread.join(15)
    finally:
        plain.close()
