"""`pgqueue migrate --partition-results` moves an existing installation's results into
the partitioned table (migration 0010 leaves them a plain table).

A schema that has been at version 9 and is migrated with 1,000,000 results spread over
ten days keeps them in the plain table; converting it puts every row in the partition of
its day and state, look-ups by id use the index, and the time it took is printed (about
30 s on the development machine; this runs in CI).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgqueue.db import migrations
from pgqueue.db.queries import Queries
from tests.pgserver import drop_schema

ROWS = 1_000_000
DAYS = 10


@pytest.fixture
def old_schema(pg_dsn: str) -> Iterator[str]:
    """A schema migrated to version 9 only (results not partitioned yet)."""
    name = f"m_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn) as conn, conn.transaction():
        migrations._apply(conn, Queries(name),
                          [m for m in migrations.available() if m.version <= 9])
    yield name
    drop_schema(pg_dsn, name)


def run(conn: psycopg.Connection[Any], schema: str, query: str,
        params: dict[str, Any] | None = None) -> list[Any]:
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    return conn.execute(query.encode(), params).fetchall()


def test_a_million_results_move_into_day_partitions(pg_dsn: str, old_schema: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        # one row in a hundred failed; finish times over the last DAYS days
        conn.execute(
            sql.SQL("""
            INSERT INTO {}.results (id, queue, task, state, result, error, created_at,
                                    finished_at, task_id)
            SELECT gen_random_uuid(), 'default', 'app.add',
                   CASE WHEN g %% 100 = 0 THEN 'FAILURE' ELSE 'SUCCESS' END,
                   to_jsonb(g), CASE WHEN g %% 100 = 0 THEN 'ValueError' END,
                   now() - interval '10 days',
                   now() - make_interval(secs => g * (%(days)s * 86400.0 / %(rows)s)),
                   CASE WHEN g = 4242 THEN 'order-4242' END
              FROM generate_series(1, %(rows)s) AS g""").format(
                sql.Identifier(old_schema)), {"rows": ROWS, "days": DAYS})
        known = run(conn, old_schema,
                    "SELECT id, state, result FROM results WHERE task_id = 'order-4242'")[0]
        by_state = dict(run(conn, old_schema,
                            "SELECT state, count(*) FROM results GROUP BY state"))

    applied = migrations.migrate(pg_dsn, old_schema)
    assert [m.version for m in applied] == [  # every migration after 0009
        m.version for m in migrations.available() if m.version > 9]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert run(conn, old_schema, "SELECT relkind FROM pg_class"
                   " WHERE oid = 'results'::regclass") == [("r",)]
    started = time.monotonic()
    assert migrations.partition_results(pg_dsn, old_schema)
    took = time.monotonic() - started
    print(f"\n--partition-results moved {ROWS:,} results in {took:.1f} s")
    assert not migrations.partition_results(pg_dsn, old_schema)

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert dict(run(conn, old_schema,
                        "SELECT state, count(*) FROM results GROUP BY state")) == by_state
        assert run(conn, old_schema, "SELECT count(*) FROM results_default") == [(0,)]
        # every row in the partition of its own day and state
        misplaced = run(conn, old_schema, """
            SELECT count(*) FROM results r JOIN pg_class c ON c.oid = r.tableoid
             WHERE c.relname <> 'results_p'
                   || to_char((r.finished_at AT TIME ZONE 'UTC')::date, 'YYYYMMDD')
                   || CASE WHEN r.state = 'SUCCESS' THEN '_success' ELSE '_other' END""")
        assert misplaced == [(0,)]
        days = run(conn, old_schema, """
            SELECT count(*) FROM pg_inherits WHERE inhparent = 'results'::regclass""")[0][0]
        assert DAYS + 1 <= days <= DAYS + 4  # the days of the rows, tomorrow, the DEFAULT
        assert run(conn, old_schema, "SELECT id, state, result FROM results WHERE id = %(id)s",
                   {"id": known[0]}) == [known]
        plan = "\n".join(r[0] for r in run(
            conn, old_schema, "EXPLAIN SELECT * FROM results WHERE id = %(id)s",
            {"id": known[0]}))
        assert "results_p" in plan, plan
        # index-driven: a partition small enough to fit a few pages may be read whole
        scanned = re.findall(r"Seq Scan on (\w+)", plan)
        pages = run(conn, old_schema, "SELECT relname, relpages FROM pg_class"
                    " WHERE relnamespace = %(schema)s::regnamespace"
                    " AND relname = ANY(%(names)s) AND relpages > 10",
                    {"schema": old_schema, "names": scanned})
        assert pages == [], plan
        # the canvas trigger and the view are on the new table
        assert run(conn, old_schema, """
            SELECT count(*) FROM pg_trigger WHERE tgrelid = 'results'::regclass
               AND tgname LIKE 'canvas_advance_%'""") == [(2,)]
        assert run(conn, old_schema,
                   "SELECT count(*) FROM all_jobs WHERE task_id = 'order-4242'") == [(1,)]


def test_a_schema_migrated_before_0010_existed_gets_it_after_0011(pg_dsn: str) -> None:
    """Installations that ran main's 0011 before this branch's 0010 was merged: 0010 comes
    last, leaves results plain, and the conversion works then."""
    name = f"m_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(pg_dsn) as conn, conn.transaction():
            migrations._apply(conn, Queries(name),
                              [m for m in migrations.available() if m.version != 10])
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            run(conn, name, "INSERT INTO results (id, queue, task, state, created_at)"
                            " VALUES (gen_random_uuid(), 'default', 't', 'SUCCESS', now())"
                            " RETURNING 1")
        assert [m.version for m in migrations.migrate(pg_dsn, name)] == [10]
        assert migrations.partition_results(pg_dsn, name)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            assert run(conn, name, "SELECT count(*) FROM results") == [(1,)]
    finally:
        drop_schema(pg_dsn, name)
