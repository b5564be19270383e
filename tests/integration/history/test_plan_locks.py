"""What a read by id locks on partitioned results (docs/design.md, "Partitioned
history"): a generic plan (a prepared statement, "result_get_recent") locks every leaf
as it starts, the ones it then prunes too; a plan made for the id (a connection that
never prepares, "result_get_recent_unprepared") locks only the leaves planning kept,
but plans the indexes of each of them at every read."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgqueue import App
from pgqueue.db import migrations
from pgqueue.utils import uuid7


def leaves_locked(db: psycopg.Connection[Any], app: App, statement: str, mode: str) -> int:
    text = app.queries[statement].decode().replace("%(id)s", "$1")
    db.execute(f"PREPARE read_by_id(uuid) AS {text}".encode(), prepare=False)
    db.execute(f"SET plan_cache_mode = {mode}".encode(), prepare=False)
    job_id = str(uuid7())
    db.execute(f"EXECUTE read_by_id('{job_id}')".encode(), prepare=False)  # planned
    with db.transaction():
        db.execute(f"EXECUTE read_by_id('{job_id}')".encode(), prepare=False).fetchall()
        row = db.execute("""
            SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
             WHERE l.pid = pg_backend_pid() AND c.relkind = 'r'
               AND c.relname LIKE 'results_p%%'""").fetchone()
    db.execute(b"DEALLOCATE read_by_id", prepare=False)
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(("statement", "mode", "all_leaves"), [
    ("result_get_recent", "force_generic_plan", True),
    ("result_get_recent_unprepared", "force_generic_plan", True),
    ("result_get_recent_unprepared", "force_custom_plan", False),
])
def test_a_generic_plan_locks_every_leaf_a_custom_plan_those_it_kept(
        app: App, db: psycopg.Connection[Any], statement: str, mode: str,
        all_leaves: bool) -> None:
    assert migrations.partition_results(app.dsn, app.schema)
    for days_ago in range(1, 11):
        db.execute("SELECT results_partition_add((now() AT TIME ZONE 'UTC')::date - %s)",
                   [days_ago])
    row = db.execute("""SELECT count(*) FROM pg_class
                         WHERE relkind = 'r' AND relname LIKE 'results_p%%'
                           AND relnamespace = current_schema()::regnamespace""").fetchone()
    assert row is not None and row[0] >= 22
    locked = leaves_locked(db, app, statement, mode)
    if all_leaves:
        assert locked == row[0]
    else:  # today's and the days ahead, and yesterday's in the first hour of a UTC day
        assert 0 < locked <= row[0] - 18
