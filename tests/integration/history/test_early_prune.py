"""The pruner deletes the notes of ``results_early`` whose results are gone, in batches
read along its primary key (sql/migrations/0016_results_early_prune.sql), and never the
note of a result that a transaction it cannot see yet is writing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from pgqueue import App
from pgqueue.db import migrations
from pgqueue.db.connection import Dedicated
from pgqueue.services.partitions import DAY
from pgqueue.services.pruner import Pruner
from tests.conftest import wait_until
from tests.integration.history.test_id_bounds import NOW, uuid7_at


@pytest.fixture(params=["plain", "partitioned"])
def layout(request: pytest.FixtureRequest, app: App) -> str:
    if request.param == "partitioned":
        assert migrations.partition_results(app.dsn, app.schema)
    return str(request.param)


@pytest.fixture
def conn(app: App) -> Iterator[Dedicated]:
    connection = Dedicated(app.dsn, app.schema, "test")
    yield connection
    connection.close()


def write_early(db: psycopg.Connection[Any], job_id: str) -> None:
    """A result that finished days before the time its id says: the trigger notes it."""
    db.execute("""INSERT INTO results (id, queue, task, state, created_at, finished_at)
                  VALUES (%s, 'default', 't', 'SUCCESS', now(), now())""", [job_id])


def notes(db: psycopg.Connection[Any]) -> set[str]:
    return {r[0] for r in db.execute("SELECT id::text FROM results_early").fetchall()}


def test_the_notes_of_results_gone_go_in_batches_and_the_others_stay(
        app: App, db: psycopg.Connection[Any], conn: Dedicated, layout: str) -> None:
    ids = sorted(uuid7_at(NOW + timedelta(days=d)) for d in range(2, 9))
    for job_id in ids:
        write_early(db, job_id)
    assert notes(db) == set(ids)
    kept = set(ids[1::3])
    db.execute("DELETE FROM results WHERE NOT (id = ANY(%s::uuid[]))", [sorted(kept)])
    # batches of 2: a statement reads two notes, and one run goes through all of them
    pruner = Pruner(app.queries, DAY, worker_ttl=60, batch=2, run_seconds=60)
    pruner.run_once(conn)
    assert notes(db) == kept and pruner.early_deleted == len(ids) - len(kept)
    # a run cut short goes on from where it stopped
    for job_id in sorted(set(ids) - kept):
        write_early(db, job_id)
        db.execute("DELETE FROM results WHERE id = %s", [job_id])
    pruner = Pruner(app.queries, DAY, worker_ttl=60, batch=2, run_seconds=0)
    for _ in range(len(ids)):
        pruner.run_once(conn)
    assert notes(db) == kept


def test_the_prune_reads_the_notes_by_their_primary_key(
        app: App, db: psycopg.Connection[Any]) -> None:
    for d in range(2, 40):
        write_early(db, uuid7_at(NOW + timedelta(days=d)))
    db.execute("ANALYZE results_early")
    text = app.queries["results_early_prune"].decode()
    text = text.replace("%(after)s", "$1").replace("%(limit)s", "$2")
    db.execute(f"PREPARE early_prune(uuid, bigint) AS {text}".encode())
    db.execute("SET enable_seqscan = off")  # a table this small: the plan it would take
    with db.transaction(force_rollback=True):
        plan = "\n".join(r[0] for r in db.execute(
            "EXPLAIN (ANALYZE, COSTS OFF) EXECUTE early_prune("
            "'00000000-0000-7000-8000-000000000000', 5)").fetchall())
    assert "Index Scan using results_early_pkey" in plan
    assert "rows=5 loops=1" in plan.split("Index Scan using results_early_pkey", 1)[1]


def test_a_note_written_again_while_the_prune_waits_stays(
        app: App, db: psycopg.Connection[Any], conn: Dedicated, direct_dsn: str,
        layout: str) -> None:
    """The id's result is gone and the prune is about to delete its note, when the id is
    sent again and finishes early again in a transaction not yet committed: the prune
    cannot see that result, waits for the note, and leaves it."""
    job_id = uuid7_at(NOW + timedelta(days=3))
    write_early(db, job_id)
    db.execute("DELETE FROM results WHERE id = %s", [job_id])
    with psycopg.connect(direct_dsn) as writer:
        writer.execute(f'SET search_path TO "{app.schema}"')
        write_early(writer, job_id)  # uncommitted: the note is a new version, locked
        pruner = Pruner(app.queries, DAY, worker_ttl=60, batch=10, run_seconds=60)
        done = threading.Event()
        failed: list[BaseException] = []

        def prune() -> None:
            try:
                pruner.run_once(conn)
            except BaseException as error:  # noqa: BLE001 - reported by the test
                failed.append(error)
            finally:
                done.set()

        thread = threading.Thread(target=prune)
        thread.start()
        blocked: Callable[[], bool] = lambda: done.is_set() or db.execute(  # noqa: E731
            """SELECT EXISTS (SELECT FROM pg_stat_activity WHERE wait_event_type = 'Lock'
                                 AND query LIKE %s)""",
            ["%results_early%"]).fetchone() == (True,)
        wait_until(blocked, timeout=30, message="the prune waits for the note")
        assert not done.is_set(), failed
        writer.commit()
        assert done.wait(30) and not failed
        thread.join()
    assert notes(db) == {job_id}
    assert db.execute("SELECT count(*) FROM results WHERE id = %s", [job_id]).fetchone() == (1,)
    assert pruner.early_deleted == 0


def test_the_worker_role_prunes_the_notes(
        app: App, db: psycopg.Connection[Any], groups: dict[str, str],
        login: Callable[..., str], apps: Callable[[str], App]) -> None:
    job_id = uuid7_at(NOW + timedelta(days=3))
    write_early(db, job_id)
    db.execute("DELETE FROM results WHERE id = %s", [job_id])
    worker = apps(login(groups["worker"]))
    as_worker = Dedicated(worker.dsn, worker.schema, "test")
    try:
        Pruner(worker.queries, DAY, worker_ttl=60).run_once(as_worker)
    finally:
        as_worker.close()
    assert notes(db) == set()
