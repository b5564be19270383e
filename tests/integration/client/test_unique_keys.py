"""A live ``unique_key`` hands out the job holding it, never an id that was not inserted."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgqueue import App, AsyncResult
from pgqueue.exceptions import DuplicateJob
from tests.conftest import running_worker


@pytest.fixture
def add(app: App) -> Any:
    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    return add


def job_ids(db: psycopg.Connection[Any], key: str) -> list[str]:
    rows = db.execute("SELECT id::text FROM jobs WHERE unique_key = %s", [key]).fetchall()
    return [row[0] for row in rows]


def test_a_duplicate_returns_the_live_job_flagged(add: Any, db: psycopg.Connection[Any]) -> None:
    first = add.apply_async((1, 2), unique_key="k")
    second = add.apply_async((3, 4), unique_key="k", task_id=None)
    assert first.duplicate is False
    assert second.duplicate is True and second.id == first.id
    assert job_ids(db, "k") == [first.id]
    assert second.args is not None and second.args == [1, 2]  # the holder's arguments


def test_on_duplicate_raise_names_the_holder(add: Any, db: psycopg.Connection[Any]) -> None:
    first = add.apply_async((1, 2), unique_key="k")
    with pytest.raises(DuplicateJob, match=f"held by the live job {first.id}") as caught:
        add.apply_async((1, 2), unique_key="k", on_duplicate="raise")
    assert caught.value.job_id == first.id and caught.value.unique_key == "k"
    assert job_ids(db, "k") == [first.id]


@pytest.mark.parametrize("bad", ["ignore", "", 1, True])
def test_on_duplicate_is_validated(add: Any, db: psycopg.Connection[Any], bad: Any) -> None:
    with pytest.raises(ValueError, match="on_duplicate must be 'return' or 'raise'"):
        add.apply_async((1, 2), unique_key="k", on_duplicate=bad)
    assert job_ids(db, "k") == []


def test_a_finished_holder_frees_the_key(app: App, add: Any,
                                         db: psycopg.Connection[Any]) -> None:
    first = add.apply_async((1, 2), unique_key="k")
    with running_worker(app):
        assert first.get(timeout=10) == 3
    again = add.apply_async((5, 5), unique_key="k")
    assert again.duplicate is False and again.id != first.id
    assert job_ids(db, "k") == [again.id]
    with running_worker(app):
        assert again.get(timeout=10) == 10


def test_apply_many_reports_duplicates_also_within_the_call(
        add: Any, db: psycopg.Connection[Any]) -> None:
    held = add.apply_async((0, 0), unique_key="a")
    results = add.apply_many([(1, 1), (2, 2), (3, 3), (4, 4)],
                             unique_key=["a", "b", "b", None])
    assert [r.duplicate for r in results] == [True, False, True, False]
    assert results[0].id == held.id
    assert results[2].id == results[1].id  # the second "b" met the first, in the same call
    stored = {row[0] for row in db.execute("SELECT id::text FROM jobs").fetchall()}
    assert {r.id for r in results} | {held.id} == stored
    assert len(stored) == 3


def test_apply_many_raise_inserts_nothing(add: Any, db: psycopg.Connection[Any]) -> None:
    held = add.apply_async((0, 0), unique_key="a")
    with pytest.raises(DuplicateJob, match=held.id):
        add.apply_many([(1, 1), (2, 2)], unique_key=["new", "a"], on_duplicate="raise")
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (1,)


@pytest.mark.parametrize("keys, message", [
    (["a"], "lists 1 keys for 2 calls"),
    (["a", "k" * 501], "call 1: unique_key must be"),
    (["a", 5], "call 1: unique_key"),
])
def test_apply_many_keys_are_checked(add: Any, db: psycopg.Connection[Any], keys: list[Any],
                                     message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        add.apply_many([(1, 1), (2, 2)], unique_key=keys)
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def test_a_shared_key_for_many_calls_is_refused(add: Any) -> None:
    with pytest.raises(ValueError, match="give apply_many a list"):
        add.apply_many([(1, 1), (2, 2)], unique_key="k")


def race(add: Any, key: str, senders: int) -> list[AsyncResult]:
    """``senders`` threads send ``key`` at once; the results they got."""
    barrier = threading.Barrier(senders)
    results: list[AsyncResult] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            barrier.wait(10)
            results.append(add.apply_async((1, 1), unique_key=key))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=send) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    return results


def test_racing_producers_all_get_the_one_job(app: App, add: Any,
                                              db: psycopg.Connection[Any]) -> None:
    """Threads send the same key at once: one job exists, and every caller holds it."""
    for round_ in range(5):
        key = f"race-{round_}"
        results = race(add, key, 6)
        ids = job_ids(db, key)
        assert len(ids) == 1
        assert {r.id for r in results} == set(ids)
        assert sorted(r.duplicate for r in results) == [False] + [True] * 5


def test_in_the_callers_transaction(app: App, add: Any, pg_dsn: str,
                                    db: psycopg.Connection[Any]) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(app.schema)))
        first = add.apply_async((1, 2), unique_key="tx", connection=conn)
        second = add.apply_async((1, 2), unique_key="tx", connection=conn)
        assert second.duplicate and second.id == first.id  # its own, uncommitted, job
        with pytest.raises(DuplicateJob, match=first.id):
            add.apply_async((1, 2), unique_key="tx", connection=conn, on_duplicate="raise")
        assert job_ids(db, "tx") == []  # not committed yet
    assert job_ids(db, "tx") == [first.id]  # the caller's transaction decided
    with psycopg.connect(pg_dsn) as conn:
        again = add.apply_async((1, 2), unique_key="tx", connection=conn)
    assert again.duplicate and again.id == first.id


def test_a_holder_committed_after_a_repeatable_read_snapshot(
        app: App, add: Any, pg_dsn: str, db: psycopg.Connection[Any]) -> None:
    """The holder exists but the caller's snapshot cannot see it: Postgres's error, which
    such callers retry, and no phantom."""
    with psycopg.connect(pg_dsn) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.execute("SELECT 1")  # the snapshot is taken
        held = add.apply_async((1, 2), unique_key="rr")
        with pytest.raises(psycopg.errors.SerializationFailure):
            add.apply_async((1, 2), unique_key="rr", connection=conn)
    assert job_ids(db, "rr") == [held.id]


def test_sending_while_holders_finish_never_hands_out_a_phantom(
        app: App, add: Any, db: psycopg.Connection[Any]) -> None:
    """A worker finishes each holder as fast as it can while the key is sent again and
    again: every id handed out is a job that exists (live or finished)."""
    handed: list[AsyncResult] = []
    with running_worker(app, concurrency=4):
        for i in range(150):
            handed.append(add.apply_async((i, 0), unique_key="busy"))
        for result in handed:
            assert result.get(timeout=20) is not None
    known = {row[0] for row in db.execute(
        "SELECT id::text FROM jobs UNION ALL SELECT id::text FROM results").fetchall()}
    assert {r.id for r in handed} <= known
