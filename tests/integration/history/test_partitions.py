"""History that scales (issue 18, point 4), opt-in: results partitioned by finish day and
state (`pgqueue migrate --partition-results`), retention per state by dropping
partitions, an archive schema, partitions added ahead by the maintenance leader
(sql/migrations/0010_partitioned_results.sql, pgqueue.services.partitions). Every test
here runs on a schema that held results when it was converted."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgqueue import App
from pgqueue.db import migrations
from pgqueue.db.connection import Dedicated
from pgqueue.exceptions import ConfigurationError
from pgqueue.services.maintenance import leader_services
from pgqueue.services.partitions import DAY, Partitioner
from tests.conftest import running_worker

WEEK = 7 * DAY


@pytest.fixture(autouse=True)
def partitioned(app: App, db: psycopg.Connection[Any]) -> None:
    """The test's schema with results of today, converted as an installation would be;
    the rows come through, then go, so that each test starts from an empty history."""
    db.execute("""
        INSERT INTO results (id, queue, task, state, result, created_at)
        SELECT gen_random_uuid(), 'default', 'h.before', s, '7', now()
          FROM unnest(ARRAY['SUCCESS', 'FAILURE', 'REVOKED']) AS s""")
    assert migrations.partition_results(app.dsn, app.schema)
    assert db.execute("SELECT state, result FROM results ORDER BY state").fetchall() == [
        ("FAILURE", 7), ("REVOKED", 7), ("SUCCESS", 7)]
    db.execute("DELETE FROM results")


@pytest.fixture
def conn(app: App) -> Iterator[Dedicated]:
    connection = Dedicated(app.dsn, app.schema, "test")
    yield connection
    connection.close()


def partitions(db: psycopg.Connection[Any]) -> set[str]:
    return {name for (name,) in db.execute("""
        SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'results'::regclass
            OR i.inhparent IN (SELECT inhrelid FROM pg_inherits
                                WHERE inhparent = 'results'::regclass)""")}


def day_name(db: psycopg.Connection[Any], days_ago: int) -> str:
    row = db.execute("SELECT 'results_p' || to_char((now() AT TIME ZONE 'UTC')::date - %s,"
                     " 'YYYYMMDD')", [days_ago]).fetchone()
    assert row is not None
    return str(row[0])


def add_day(db: psycopg.Connection[Any], days_ago: int) -> str:
    db.execute("SELECT results_partition_add((now() AT TIME ZONE 'UTC')::date - %s)",
               [days_ago])
    return day_name(db, days_ago)


def add_results(db: psycopg.Connection[Any], days_ago: int, state: str, count: int) -> None:
    """``count`` results of ``state`` that finished at noon (UTC) ``days_ago`` days ago."""
    db.execute("""
        INSERT INTO results (id, queue, task, state, created_at, finished_at)
        SELECT gen_random_uuid(), 'default', 'h.t', %s, now() - interval '30 days',
               ((now() AT TIME ZONE 'UTC')::date - %s + time '12:00') AT TIME ZONE 'UTC'
          FROM generate_series(1, %s)""", [state, days_ago, count])


def counts(db: psycopg.Connection[Any]) -> dict[str, int]:
    return dict(db.execute("SELECT state, count(*) FROM results GROUP BY state").fetchall())


def test_a_fresh_schema_has_today_tomorrow_and_a_default_partition(
        db: psycopg.Connection[Any]) -> None:
    today, tomorrow = day_name(db, 0), day_name(db, -1)
    assert partitions(db) == {"results_default", today, f"{today}_success", f"{today}_other",
                              tomorrow, f"{tomorrow}_success", f"{tomorrow}_other"}


def test_the_leader_adds_the_days_ahead_and_moves_their_rows_out_of_the_default(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    db.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(day_name(db, -1))))
    # a row for the day after tomorrow arrives before its partition: DEFAULT takes it
    add_results(db, -2, "FAILURE", 3)
    assert db.execute("SELECT count(*) FROM results_default").fetchone() == (3,)

    Partitioner(app.queries, DAY, WEEK, days_ahead=2).run_once(conn)

    assert {day_name(db, -1), day_name(db, -2), f"{day_name(db, -2)}_other"} <= partitions(db)
    assert db.execute("SELECT count(*) FROM results_default").fetchone() == (0,)
    assert db.execute(sql.SQL("SELECT count(*) FROM {}").format(
        sql.Identifier(f"{day_name(db, -2)}_other"))).fetchone() == (3,)


def test_a_days_successes_are_dropped_while_its_failures_stay(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    for days_ago in (3, 10):
        add_day(db, days_ago)
        add_results(db, days_ago, "SUCCESS", 50)
        add_results(db, days_ago, "FAILURE", 5)
        add_results(db, days_ago, "REVOKED", 1)
    add_results(db, 0, "SUCCESS", 7)
    kept = db.execute("SELECT id::text FROM results WHERE state = 'FAILURE' "
                      "AND finished_at > now() - interval '5 days' LIMIT 1").fetchone()
    assert kept is not None

    partitioner = Partitioner(app.queries, DAY, WEEK)
    partitioner.run_once(conn)

    three, ten = day_name(db, 3), day_name(db, 10)
    assert {name for name, _, _ in partitioner.pruned} == {
        f"{three}_success", f"{ten}_success", f"{ten}_other"}
    assert counts(db) == {"SUCCESS": 7, "FAILURE": 5, "REVOKED": 1}
    assert three in partitions(db) and ten not in partitions(db)
    assert f"{three}_success" not in partitions(db)
    failed = app.AsyncResult(kept[0])
    assert failed.state == "FAILURE"
    # a success that arrives late for that day (plain SQL) still has somewhere to go
    add_results(db, 3, "SUCCESS", 1)
    assert db.execute(sql.SQL("SELECT count(*) FROM {}").format(
        sql.Identifier(f"{three}_other"))).fetchone() == (7,)
    # a second run finds nothing more to do
    partitioner.run_once(conn)
    assert partitioner.pruned == []


def test_failures_kept_shorter_than_successes_empty_the_days_other_partition(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    three = add_day(db, 3)
    add_results(db, 3, "SUCCESS", 20)
    add_results(db, 3, "FAILURE", 4)

    Partitioner(app.queries, WEEK, DAY).run_once(conn)

    assert counts(db) == {"SUCCESS": 20}
    assert f"{three}_other" in partitions(db)  # emptied: still the day's DEFAULT


def test_archive_keeps_expired_partitions_as_plain_tables(
        app: App, db: psycopg.Connection[Any], conn: Dedicated, schema: str) -> None:
    archive = f"{schema}_archive"
    db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(archive)))
    try:
        four = add_day(db, 4)
        add_results(db, 4, "SUCCESS", 30)
        add_results(db, 4, "FAILURE", 2)
        app.conf.result_archive_schema = archive
        app.conf.result_expires_failed = 2 * DAY
        partitioner = [s for s in leader_services(app) if isinstance(s, Partitioner)][0]
        partitioner.run_once(conn)

        assert counts(db) == {}
        assert {(name, archived) for name, _, archived in partitioner.pruned} == {
            (f"{four}_success", True), (f"{four}_other", True)}
        archived = db.execute(sql.SQL("SELECT state, count(*) FROM {}.{} GROUP BY state"
                                      " UNION ALL SELECT state, count(*) FROM {}.{}"
                                      " GROUP BY state").format(
            sql.Identifier(archive), sql.Identifier(f"{four}_success"),
            sql.Identifier(archive), sql.Identifier(f"{four}_other"))).fetchall()
        assert dict(archived) == {"SUCCESS": 30, "FAILURE": 2}
    finally:
        db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(archive)))


def test_a_missing_archive_schema_drops_nothing_and_says_so_once(
        app: App, db: psycopg.Connection[Any], conn: Dedicated,
        caplog: pytest.LogCaptureFixture) -> None:
    add_day(db, 9)
    add_results(db, 9, "SUCCESS", 3)
    partitioner = Partitioner(app.queries, DAY, WEEK, archive_schema="no_such_archive")
    with caplog.at_level(logging.WARNING, logger="pgqueue.maintenance"):
        partitioner.run_once(conn)
        partitioner.run_once(conn)
    assert counts(db) == {"SUCCESS": 3}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no_such_archive" in warnings[0]
    assert "\n" not in warnings[0]


def test_no_retention_keeps_every_partition(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    add_day(db, 30)
    add_results(db, 30, "SUCCESS", 2)
    add_results(db, 30, "FAILURE", 2)
    for success, failed in ((None, None), (0, 0)):
        Partitioner(app.queries, success, failed).run_once(conn)
    assert counts(db) == {"SUCCESS": 2, "FAILURE": 2}


@pytest.mark.parametrize(("name", "value"), [
    ("result_expires_failed", -1), ("result_expires_failed", "a week"),
    ("result_expires_failed", float("nan")), ("result_archive_schema", ""),
    ("result_archive_schema", 42), ("result_archive_schema", "x" * 64),
])
def test_hostile_history_settings_are_refused_in_one_line(app: App, name: str,
                                                          value: Any) -> None:
    with pytest.raises(ConfigurationError) as refused:
        setattr(app.conf, name, value)
    assert "\n" not in str(refused.value) and repr(name) in str(refused.value)


def test_the_worker_role_maintains_partitions_through_the_functions_only(
        app: App, db: psycopg.Connection[Any], groups: dict[str, str],
        login: Callable[..., str], apps: Callable[[str], App]) -> None:
    """Only the owner of results may add or drop its partitions: the worker role does it
    through the SECURITY DEFINER functions, which no other role may call."""
    add_day(db, 5)
    add_results(db, 5, "SUCCESS", 4)
    worker = apps(login(groups["worker"]))
    as_worker = Dedicated(worker.dsn, worker.schema, "test")
    try:
        Partitioner(worker.queries, DAY, WEEK, days_ahead=3).run_once(as_worker)
    finally:
        as_worker.close()
    assert counts(db) == {} and day_name(db, -3) in partitions(db)
    producer = apps(login(groups["producer"]))
    with psycopg.connect(producer.dsn) as other, pytest.raises(
            psycopg.errors.InsufficientPrivilege):
        other.execute(sql.SQL("SELECT {}.results_partition_add(current_date + 9)").format(
            sql.Identifier(producer.schema)))


def test_a_task_id_sent_again_keeps_one_result(app: App, db: psycopg.Connection[Any]) -> None:
    """With no unique index on id, the statement that stores a result deletes the one
    before it: a task id run three times has one result, the last."""
    @app.task(name="h.echo")
    def echo(x: int) -> int:
        return x

    task_id = str(uuid.uuid4())
    with running_worker(app):
        for x in (1, 2, 3):
            assert echo.apply_async((x,), task_id=task_id).get(timeout=20) == x
    assert db.execute("SELECT result FROM results WHERE id = %s",
                      [task_id]).fetchall() == [(3,)]
