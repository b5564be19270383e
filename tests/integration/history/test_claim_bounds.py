"""Whether a unique claim holds reads its job's result in the days since the job's id was
made (sql/migrations/0017_result_id_bound.sql): the sends that meet a claim
(job_insert_claimed, unique_claim_holders) and the claims' pruning. The bound is exact
(-infinity for an id noted in results_early), so every holder must still be found, on
both layouts, whatever its id: a time to come or long past, no time at all."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from pgqueue import App
from pgqueue.db.connection import Dedicated
from pgqueue.db.queries import Queries
from pgqueue.limits import row_id
from pgqueue.services.pruner import Pruner
from pgqueue.utils import uuid7
from tests.integration.history.test_id_bounds import scanned_leaves, uuid7_at

NOW = datetime.now(timezone.utc)

# (task id of the holder, when its result finished)
HOLDERS = {
    "v7": (str(uuid7()), NOW),
    "v7-days-ago": (uuid7_at(NOW - timedelta(days=5)), NOW - timedelta(days=5)),
    "v7-made-days-before-it-finished": (uuid7_at(NOW - timedelta(days=4)), NOW),
    "v7-a-year-ahead": (uuid7_at(NOW + timedelta(days=400)), NOW),  # in results_early
    "v7-finished-before-its-time": (str(uuid7()), NOW - timedelta(hours=3)),  # too
    "v4": ("6f1c2e0a-3b4d-4e5f-8a6b-7c8d9e0f1a2b", NOW),
    "custom": ("order-17", NOW),
}


@pytest.fixture(params=["plain", "partitioned"])
def layout(request: pytest.FixtureRequest, app: App, db: psycopg.Connection[Any]) -> str:
    if request.param == "partitioned":
        from pgqueue.db import migrations

        assert migrations.partition_results(app.dsn, app.schema)
        db.execute("""SELECT results_partition_add((now() AT TIME ZONE 'UTC')::date - n)
                        FROM generate_series(1, 10) n""")
    return str(request.param)


def hold(db: psycopg.Connection[Any], key: str, task_id: str, finished: datetime,
         state: str = "SUCCESS") -> str:
    """A final job holding ``key`` while it is a success (unique_states=success)."""
    rid = row_id(task_id)
    assert rid is not None
    db.execute("""INSERT INTO results (id, task_id, queue, task, state, created_at,
                                       finished_at)
                  VALUES (%s, %s, 'default', 't.add', %s, %s, %s)""",
               [rid, None if rid == task_id else task_id, state,
                finished - timedelta(seconds=1), finished])
    db.execute("INSERT INTO unique_claims (key, job_id, states) VALUES (%s, %s, %s)",
               [key, rid, ["success"]])
    return rid


def prune_claims(app: App) -> None:
    conn = Dedicated(app.dsn, app.schema, "test-pruner")
    try:
        Pruner(app.queries, result_expires=None, worker_ttl=3600).run_once(conn)
    finally:
        conn.close()


def claims(db: psycopg.Connection[Any]) -> list[str]:
    return [key for (key,) in db.execute("SELECT key FROM unique_claims ORDER BY key")]


@pytest.mark.parametrize("holder", list(HOLDERS))
def test_a_final_holder_is_found_wherever_it_finished(
        app: App, db: psycopg.Connection[Any], layout: str, holder: str) -> None:
    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    task_id, finished = HOLDERS[holder]
    rid = hold(db, "k", task_id, finished)
    sent = add.apply_async((1, 1), unique_key="k", unique_states=("success",))
    assert sent.duplicate and row_id(sent.id) == rid
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
    prune_claims(app)
    assert claims(db) == ["k"]  # its job is a success: the claim holds for ever
    db.execute("UPDATE results SET state = 'FAILURE' WHERE id = %s", [rid])
    prune_claims(app)
    assert claims(db) == []  # a failure does not count: the claim can never hold again


def test_a_producer_reads_claims_without_a_grant_on_results_early(
        pg_dsn: str, schema: str, groups: dict[str, str], login: Callable[..., str],
        apps: Callable[[str], App], db: psycopg.Connection[Any]) -> None:
    from pgqueue.db import migrations

    assert migrations.partition_results(pg_dsn, schema)
    task_id, finished = HOLDERS["v7-a-year-ahead"]
    rid = hold(db, "k", task_id, finished)
    assert db.execute("SELECT count(*) FROM results_early WHERE id = %s",
                      [rid]).fetchone() == (1,)
    producer = apps(login(groups["producer"]))

    @producer.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    sent = add.apply_async((1, 1), unique_key="k", unique_states=("success",))
    assert sent.duplicate and sent.id == task_id


def test_a_claim_check_reads_the_days_since_its_job_was_made(
        app: App, db: psycopg.Connection[Any], layout: str) -> None:
    if layout == "plain":
        pytest.skip("days are partitions")
    hold(db, "k", str(uuid7()), NOW)
    old = (NOW - timedelta(days=3)).strftime("%Y%m%d")
    text = Queries(app.schema)["unique_claim_holders"].decode()
    plan = db.execute(f"EXPLAIN (ANALYZE, COSTS OFF) {text}".encode(),
                      {"keys": '["k"]'}).fetchall()
    scanned = scanned_leaves([(line,) for (line,) in plan if "Scan" in line])
    assert scanned and not {leaf for leaf in scanned if leaf.startswith(f"results_p{old}")}
    row = db.execute(text.encode(), {"keys": '["k"]'}).fetchone()
    assert row is not None and row[2] is True
