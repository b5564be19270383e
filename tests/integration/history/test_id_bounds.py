"""Look-ups of results by id read only the days a result of that id can be in
(sql/migrations/0013_result_id_time.sql): from the time in a UUIDv7, less an hour. Every
test runs on both layouts; the hostile ones (ids with a time to come or long past, ids
with no time, an id sent again, a result that finished days after its id was made, or
before the time its id says) must find every row and keep one result per id."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from pgqueue import App
from pgqueue.db import migrations
from pgqueue.db.queries import Queries
from pgqueue.utils import uuid7
from tests.conftest import running_worker
from tests.pgserver import drop_schema


def uuid7_at(moment: datetime) -> str:
    """A UUIDv7 whose time is ``moment`` (what a producer with that clock would make)."""
    ms = int(moment.timestamp() * 1000) & 0xFFFF_FFFF_FFFF
    tail = uuid.uuid4().int & ((1 << 74) - 1)
    value = ms << 80 | 0x7 << 76 | (tail >> 62) << 64 | 0b10 << 62 | (tail & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


NOW = datetime.now(timezone.utc)
YESTERDAY = (NOW - timedelta(days=1)).strftime("%Y%m%d")


@pytest.fixture(params=["plain", "partitioned"])
def layout(request: pytest.FixtureRequest, app: App) -> str:
    if request.param == "partitioned":
        assert migrations.partition_results(app.dsn, app.schema)
    return str(request.param)


@pytest.fixture
def echo(app: App) -> Any:
    @app.task(name="h.echo")
    def echo(x: int) -> int:
        return x
    return echo


def results_of(db: psycopg.Connection[Any], job_id: str) -> list[Any]:
    return db.execute("SELECT result FROM results WHERE id = %s", [job_id]).fetchall()


def noted(db: psycopg.Connection[Any], job_id: str) -> bool:
    return db.execute("SELECT EXISTS (SELECT FROM results_early WHERE id = %s)",
                      [job_id]).fetchone() == (True,)


@pytest.mark.parametrize(("job_id", "since"), [
    ("019421bc-aa00-7000-8000-000000000001",  # 2025-01-01 12:00:00 UTC
     datetime(2025, 1, 1, 11, 0, tzinfo=timezone.utc)),
    ("00000000-0000-7000-8000-000000000001",  # the epoch: the bound is before it
     datetime(1969, 12, 31, 23, 0, tzinfo=timezone.utc)),
    ("ffffffff-ffff-7fff-bfff-ffffffffffff", "year 10889"),  # the largest time a v7 holds
    ("6f1c2e0a-3b4d-4e5f-8a6b-7c8d9e0f1a2b", "-infinity"),  # v4
    (str(uuid.uuid5(uuid.NAMESPACE_URL, "order-1")), "-infinity"),
    ("00000000-0000-0000-0000-000000000000", "-infinity"),
])
def test_the_bound_is_the_time_in_a_uuid7_less_an_hour_and_none_for_other_ids(
        db: psycopg.Connection[Any], job_id: str, since: Any) -> None:
    if since == "year 10889":
        row = db.execute("SELECT extract(year FROM result_id_since(%s))", [job_id]).fetchone()
        assert row == (10889,)
    elif since == "-infinity":
        assert db.execute("SELECT result_id_since(%s) = '-infinity'",
                          [job_id]).fetchone() == (True,)
    else:
        row = db.execute("SELECT result_id_since(%s)", [job_id]).fetchone()
        assert row is not None and abs((row[0] - since).total_seconds()) < 0.002


def scanned_leaves(plan: list[Any]) -> set[str]:
    text = "\n".join(line for (line,) in plan)
    return {m for m in re.findall(r" on (results_\w+)", text)
            if "(never executed)" not in text.split(m, 1)[1].split("\n", 1)[0]}


def explain(db: psycopg.Connection[Any], job_id: str) -> list[Any]:
    uuid.UUID(job_id)  # a literal below: only a UUID
    return db.execute(
        f"EXPLAIN (ANALYZE, COSTS OFF) EXECUTE read_recent('{job_id}')".encode()).fetchall()


@pytest.mark.parametrize(("statement", "plan_mode"), [
    ("result_get_recent", "force_generic_plan"),  # prepared: pruned as the plan starts
    ("result_get_recent", "force_custom_plan"),
    ("result_get_recent_unprepared", "force_custom_plan"),  # pruned as it is planned
    ("result_get_recent_unprepared", "force_generic_plan"),
])
def test_a_read_by_a_uuid7_reads_the_days_since_its_time_only(
        app: App, db: psycopg.Connection[Any], statement: str, plan_mode: str) -> None:
    assert migrations.partition_results(app.dsn, app.schema)
    for days_ago in (1, 3, 10):
        db.execute("SELECT results_partition_add((now() AT TIME ZONE 'UTC')::date - %s)",
                   [days_ago])
    text = Queries(app.schema)[statement].decode().replace("%(id)s", "$1")
    db.execute(f"PREPARE read_recent(uuid) AS {text}")
    db.execute(f"SET plan_cache_mode = {plan_mode}")
    today = db.execute("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')").fetchone()
    assert today is not None
    fresh = scanned_leaves(explain(db, str(uuid7())))
    # today's, tomorrow's (and the DEFAULT, which a lower bound always keeps); the hour
    # of margin reaches yesterday only in the first hour of a UTC day
    assert f"results_p{today[0]}_success" in fresh
    earlier = {leaf for leaf in fresh if re.match(r"results_p\d{8}_", leaf)
               and leaf[9:17] < today[0]}
    assert earlier <= ({f"results_p{YESTERDAY}_success", f"results_p{YESTERDAY}_other"}
                       if NOW.hour == 0 else set())
    # an id with no time reads every partition
    whole = scanned_leaves(explain(db, str(uuid.uuid4())))
    assert f"results_p{YESTERDAY}_success" in whole and len(whole) > len(fresh)


@pytest.mark.parametrize("when", [timedelta(days=400), timedelta(hours=3),
                                  timedelta(minutes=30), -timedelta(days=5000)])
def test_an_id_with_any_time_sent_again_keeps_one_result_and_reads_the_last(
        app: App, db: psycopg.Connection[Any], layout: str, echo: Any,
        when: timedelta) -> None:
    """A task id that is a UUIDv7 from a clock ahead (a day to come, hours) or far behind:
    the first result may finish before the time in the id; the finish of the second
    must still find it, and every read must see the last."""
    job_id = uuid7_at(NOW + when)
    with running_worker(app):
        for x in (1, 2, 3):
            result = echo.apply_async((x,), task_id=job_id)
            assert result.get(timeout=20) == x
            assert app.AsyncResult(job_id).result == x
            assert results_of(db, job_id) == [(x,)]
    # noted only when it finished more than an hour before its id's time
    assert noted(db, job_id) == (when > timedelta(hours=1))


@pytest.mark.parametrize("task_id", ["order-17", "0b6f4a52-96c1-4d0e-9a57-2d1f0e3c4b5a",
                                     "{3C9E1D2B-7A4F-4E6B-8D0C-1F2A3B4C5D6E}"])
def test_ids_without_a_time_sent_again_keep_one_result(
        app: App, db: psycopg.Connection[Any], layout: str, echo: Any, task_id: str) -> None:
    with running_worker(app):
        for x in (1, 2):
            assert echo.apply_async((x,), task_id=task_id).get(timeout=20) == x
    rows = db.execute("SELECT result FROM results").fetchall()
    assert rows == [(2,)]
    assert app.AsyncResult(task_id).result == 2


def test_a_result_that_finished_days_after_its_id_was_made_is_found_and_replaced(
        app: App, db: psycopg.Connection[Any], layout: str, echo: Any) -> None:
    """Made three days ago (a job that waited, or a producer's clock behind), finished
    today: its result is after the bound, in today's partition."""
    job_id = uuid7_at(NOW - timedelta(days=3))
    with running_worker(app):
        assert echo.apply_async((1,), task_id=job_id).get(timeout=20) == 1
        assert echo.apply_async((2,), task_id=job_id).get(timeout=20) == 2
    assert results_of(db, job_id) == [(2,)]
    assert not noted(db, job_id)


def test_a_result_written_before_its_ids_time_by_plain_sql_is_noted_read_and_replaced(
        app: App, db: psycopg.Connection[Any], layout: str, echo: Any) -> None:
    """A row that no bound would find (finished three hours before the time in its id,
    written by hand; within the day that results are kept): the trigger notes the id,
    reads fall back to the whole table, and the next finish of the id replaces it."""
    job_id = str(uuid7())
    db.execute("""INSERT INTO results (id, queue, task, state, result, created_at, finished_at)
                  VALUES (%s, 'default', 'h.echo', 'SUCCESS', '41', now() - interval '3 hours',
                          now() - interval '3 hours')""", [job_id])
    assert noted(db, job_id)
    assert app.AsyncResult(job_id).result == 41  # read again, unbounded
    with running_worker(app):
        assert echo.apply_async((42,), task_id=job_id).get(timeout=20) == 42
    assert results_of(db, job_id) == [(42,)]


def test_a_revoked_and_a_retried_job_keep_one_result(
        app: App, db: psycopg.Connection[Any], layout: str, echo: Any) -> None:
    """Revoke (the control role's statement) and retry by hand replace or move a future
    id's result as the worker's finish does."""
    job_id = uuid7_at(NOW + timedelta(days=30))
    first = echo.apply_async((1,), task_id=job_id, countdown=3600)
    first.revoke()
    assert app.AsyncResult(job_id).state == "REVOKED"
    assert noted(db, job_id)
    app.retry([job_id])
    with running_worker(app):
        assert app.AsyncResult(job_id).get(timeout=20) == 1
    assert db.execute("SELECT state, result FROM results WHERE id = %s",
                      [job_id]).fetchall() == [("SUCCESS", 1)]


def test_the_migration_notes_the_ids_of_results_written_before_it(pg_dsn: str) -> None:
    name = f"m_{uuid.uuid4().hex[:12]}"
    early, fine = uuid7_at(NOW + timedelta(days=2)), str(uuid7())
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            with conn.transaction():
                migrations._apply(conn, Queries(name),
                                  [m for m in migrations.available() if m.version <= 12])
            conn.execute(f'SET search_path TO "{name}"')
            conn.execute("""INSERT INTO results (id, queue, task, state, created_at)
                            SELECT i, 'default', 't', 'SUCCESS', now()
                              FROM unnest(%s::uuid[]) i""", [[early, fine]])
        assert [m.version for m in migrations.migrate(pg_dsn, name)][0] == 13
        with psycopg.connect(pg_dsn) as conn:
            conn.execute(f'SET search_path TO "{name}"')
            assert conn.execute("SELECT id::text FROM results_early").fetchall() == [(early,)]
    finally:
        drop_schema(pg_dsn, name)
