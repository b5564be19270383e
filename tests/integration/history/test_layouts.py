"""results stays a plain table with its primary key unless converted (`pgqueue migrate
--partition-results`); the maintenance services look at the catalog for the layout, and
the history settings keep their word on a plain table."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import App
from pgqueue.db import migrations
from pgqueue.db.connection import Dedicated
from pgqueue.exceptions import PermissionDenied, SchemaMissing
from pgqueue.services.partitions import DAY, Partitioner
from pgqueue.services.pruner import Pruner
from tests.conftest import running_worker

PGQUEUE = str(Path(sys.executable).with_name("pgqueue"))
WEEK = 7 * DAY


@pytest.fixture
def conn(app: App) -> Iterator[Dedicated]:
    connection = Dedicated(app.dsn, app.schema, "test")
    yield connection
    connection.close()


def relkind(db: psycopg.Connection[Any]) -> str:
    row = db.execute("SELECT relkind FROM pg_class WHERE oid = 'results'::regclass").fetchone()
    assert row is not None
    return str(row[0])


def add_results(db: psycopg.Connection[Any], days_ago: float, state: str, count: int) -> None:
    db.execute("""
        INSERT INTO results (id, queue, task, state, created_at, finished_at)
        SELECT gen_random_uuid(), 'default', 'h.t', %s, now() - interval '30 days',
               now() - make_interval(days => %s)
          FROM generate_series(1, %s)""", [state, days_ago, count])


def counts(db: psycopg.Connection[Any]) -> dict[str, int]:
    return dict(db.execute("SELECT state, count(*) FROM results GROUP BY state").fetchall())


def test_a_migrated_schema_keeps_results_a_plain_table_with_its_primary_key(
        db: psycopg.Connection[Any]) -> None:
    assert relkind(db) == "r"
    assert db.execute("SELECT count(*) FROM pg_index WHERE indrelid = 'results'::regclass"
                      " AND indisprimary").fetchone() == (1,)
    # the leader's function has nothing to add to a plain table
    assert db.execute("SELECT results_partition_add(current_date)").fetchone() == (False,)
    assert db.execute("SELECT to_regclass('results_default')").fetchone() == (None,)


def test_converting_twice_is_a_no_op_and_keeps_rows_triggers_and_views(
        app: App, db: psycopg.Connection[Any]) -> None:
    add_results(db, 2, "SUCCESS", 5)
    add_results(db, 0, "FAILURE", 2)
    assert migrations.partition_results(app.dsn, app.schema)
    assert relkind(db) == "p"
    assert not migrations.partition_results(app.dsn, app.schema)
    assert counts(db) == {"SUCCESS": 5, "FAILURE": 2}
    assert db.execute("SELECT count(*) FROM all_jobs").fetchone() == (7,)
    assert db.execute("""SELECT count(*) FROM pg_trigger WHERE tgrelid = 'results'::regclass
                          AND tgname LIKE 'canvas_advance_%'""").fetchone() == (2,)


def test_a_converted_schema_runs_tasks_and_workflows(app: App,
                                                     db: psycopg.Connection[Any]) -> None:
    """The statements that end jobs and the canvas trigger work on the new table."""
    @app.task(name="h.add")
    def add(x: int, y: int) -> int:
        return x + y

    assert migrations.partition_results(app.dsn, app.schema)
    with running_worker(app):
        assert add.delay(2, 3).get(timeout=20) == 5
        assert (add.s(1, 1) | add.s(10)).apply_async().get(timeout=20) == 12


def test_the_cli_converts_once_and_says_so(app: App, db: psycopg.Connection[Any]) -> None:
    add_results(db, 1, "SUCCESS", 3)
    outputs = [subprocess.run(
        [PGQUEUE, "migrate", "--dsn", app.dsn, "--schema", app.schema, "--partition-results"],
        capture_output=True, text=True, timeout=120) for _ in range(2)]
    assert [o.returncode for o in outputs] == [0, 0], [o.stderr for o in outputs]
    assert "converted into day partitions" in outputs[0].stdout
    assert "partitioned already" in outputs[1].stdout
    assert relkind(db) == "p" and counts(db) == {"SUCCESS": 3}
    printed = subprocess.run(
        [PGQUEUE, "migrate", "--dsn", app.dsn, "--schema", app.schema, "--sql",
         "--partition-results"], capture_output=True, text=True, timeout=60)
    assert "results_partition()" in printed.stdout


def test_converting_an_unmigrated_schema_or_as_another_role_is_refused_in_one_line(
        app: App, pg_dsn: str, groups: dict[str, str],
        login: Callable[..., str]) -> None:
    missing = f"m_{uuid.uuid4().hex[:10]}"
    with pytest.raises(SchemaMissing) as refused:
        migrations.partition_results(pg_dsn, missing)
    assert "pgqueue migrate" in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(PermissionDenied) as denied:
        migrations.partition_results(login(groups["worker"]), app.schema)
    assert "\n" not in str(denied.value)


def test_the_partitioner_leaves_a_plain_table_alone(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    add_results(db, 10, "SUCCESS", 4)
    partitioner = Partitioner(app.queries, DAY, DAY, days_ahead=3)
    partitioner.run_once(conn)
    assert partitioner.pruned == [] and relkind(db) == "r" and counts(db) == {"SUCCESS": 4}


def test_on_a_plain_table_failures_keep_their_own_retention(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    add_results(db, 3, "SUCCESS", 4)
    add_results(db, 3, "FAILURE", 2)
    add_results(db, 3, "REVOKED", 1)
    add_results(db, 10, "FAILURE", 3)
    Pruner(app.queries, DAY, worker_ttl=60, result_expires_failed=WEEK).run_once(conn)
    assert counts(db) == {"FAILURE": 2, "REVOKED": 1}
    Pruner(app.queries, WEEK, worker_ttl=60, result_expires_failed=DAY).run_once(conn)
    assert counts(db) == {}


def test_on_a_plain_table_an_archive_schema_keeps_expired_results_and_says_so(
        app: App, db: psycopg.Connection[Any], conn: Dedicated,
        caplog: pytest.LogCaptureFixture) -> None:
    """Archiving moves partitions: on a plain table the pruner would delete what the
    setting asks to keep, so it deletes nothing and says why, until the table is
    converted."""
    add_results(db, 3, "SUCCESS", 4)
    pruner = Pruner(app.queries, DAY, worker_ttl=60, archive_schema="history_archive")
    with caplog.at_level(logging.WARNING, logger="pgqueue.maintenance"):
        pruner.run_once(conn)
        pruner.run_once(conn)
    assert counts(db) == {"SUCCESS": 4}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "--partition-results" in warnings[0]
    assert "history_archive" in warnings[0] and "\n" not in warnings[0]
