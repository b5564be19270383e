"""The canvas sweeper's statements and a workflow starter's claim read through indexes:
with 120,000 jobs, 100,000 results, 20,000 waiting steps and 5,000 start claims, no
sequential scan of any big table, on both layouts of results."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgqueue import App
from pgqueue.db import migrations
from tests.helpers import plan_scans

SOME_ID = "01000000-0000-7000-8000-000000000000"


@pytest.fixture(params=["plain", "partitioned"])
def filled(request: pytest.FixtureRequest, app: App, db: psycopg.Connection[Any]) -> None:
    if request.param == "partitioned":
        assert migrations.partition_results(app.dsn, app.schema)
    db.execute("""
        INSERT INTO jobs (id, queue, task, state)
        SELECT gen_random_uuid(), 'default', 'add', 'queued' FROM generate_series(1, 120000)""")
    db.execute("""
        INSERT INTO results (id, queue, task, state, created_at)
        SELECT gen_random_uuid(), 'default', 'add', 'SUCCESS', now()
          FROM generate_series(1, 100000)""")
    db.execute("""
        WITH steps AS (
            INSERT INTO canvas_steps (id, task, job, after, remaining, runs_on, pass,
                                      created_at)
            SELECT gen_random_uuid(), 'add', '{"queue": "default"}', ARRAY[j.id], 1,
                   'success', 'one', now() - interval '1 hour'
              FROM (SELECT id FROM jobs LIMIT 20000) j
            RETURNING id, after)
        INSERT INTO canvas_edges (before, step) SELECT after[1], id FROM steps""")
    db.execute("""
        INSERT INTO canvas_starts (starter, created_at)
        SELECT gen_random_uuid(), now() - interval '1 hour' FROM generate_series(1, 5000)""")
    for table in ("jobs", "results", "canvas_steps", "canvas_edges", "canvas_starts"):
        db.execute(f"ANALYZE {table}")


def big_relations(db: psycopg.Connection[Any]) -> set[str]:
    """The tables (partitions included) of the schema holding more than 1,000 rows."""
    return {r[0] for r in db.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
        " AND relkind = 'r' AND reltuples > 1000").fetchall()}


@pytest.mark.usefixtures("filled")
def test_the_sweeper_reads_through_indexes(app: App, db: psycopg.Connection[Any]) -> None:
    channels = app.queries.channels()
    scans: list[tuple[str, str]] = []
    for after_id in (None, SOME_ID):
        scans += plan_scans(db, app.queries["canvas_step_scan"],
                            {"after_id": after_id, "limit": 500, "grace": 60.0})
    scans += plan_scans(db, app.queries["canvas_lost_end"],
                        {"ids": [SOME_ID] * 3, "reason": "lost", **channels})
    scans += plan_scans(db, app.queries["canvas_stranded_fail"],
                        {"ids": [SOME_ID] * 3, "reason": "stranded", **channels})
    big = big_relations(db)
    assert {"jobs", "canvas_steps", "canvas_edges"} <= big
    assert ("Index Scan", "canvas_steps") in scans or \
        ("Index Only Scan", "canvas_steps") in scans, scans
    assert not [s for s in scans if "Seq Scan" in s[0] and s[1] in big], scans


@pytest.mark.usefixtures("filled")
def test_a_starters_claim_reads_through_indexes(app: App, db: psycopg.Connection[Any]) -> None:
    """Its prune of claims with a NOT EXISTS on jobs became a hash anti-join reading all
    of jobs once a few thousand claims waited; the pruner's own prune probes jobs."""
    claim = plan_scans(db, app.queries["canvas_start_claim"], {"starter": SOME_ID})
    prune = plan_scans(db, app.queries["canvas_start_prune"], {})
    big = big_relations(db)
    assert {"jobs", "canvas_starts"} <= big
    assert not [s for s in claim if "Seq Scan" in s[0] and s[1] in big], claim
    # the pruner reads the claims whole (a few minutes' worth of starts), never jobs
    assert not [s for s in prune if "Seq Scan" in s[0] and s[1] in big - {"canvas_starts"}
                ], prune
