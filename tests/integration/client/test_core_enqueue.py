"""Enqueueing: the rows `delay`, `apply_async`, `send_task` and the bulk calls write."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgqueue import App, AsyncResult, PgQueueError
from tests.conftest import running_worker, wait_until

JOB_COLUMNS = ("id, queue, task, args, kwargs, state, priority, run_at, expires_at, "
               "ignore_result, options, max_retries, created_at")


def job_row(db: psycopg.Connection[Any], job_id: str) -> dict[str, Any] | None:
    cur = db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s", [job_id])
    row = cur.fetchone()
    if row is None:
        return None
    assert cur.description is not None
    return dict(zip([c.name for c in cur.description], row, strict=True))


def count(db: psycopg.Connection[Any], table: str) -> int:
    row = db.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
    return int(row.fetchone()[0])  # type: ignore[index]


@pytest.fixture
def listener(direct_dsn: str, schema: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection LISTENing on the schema's jobs channel (direct: not through a pooler)."""
    with psycopg.connect(direct_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(f"{schema}.jobs")))
        yield conn


def notifications_until_sentinel(pg_dsn: str, schema: str,
                                 conn: psycopg.Connection[Any]) -> list[str]:
    """Every payload received before a sentinel sent now: notifications of committed
    transactions arrive in commit order, so the sentinel comes after all of them."""
    with psycopg.connect(pg_dsn, autocommit=True) as other:
        other.execute("SELECT pg_notify(%s, 'sentinel')", [f"{schema}.jobs"])
    payloads: list[str] = []
    for note in conn.notifies(timeout=10):
        if note.payload == "sentinel":
            return payloads
        payloads.append(note.payload)
    raise AssertionError("the sentinel notification never arrived")


@pytest.fixture
def tasks(app: App) -> dict[str, Any]:
    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="t.routed", queue="special", priority=4, max_retries=7)
    def routed() -> None:
        return None

    return {"add": add, "routed": routed}


def test_delay_writes_a_queued_row(app: App, db: psycopg.Connection[Any],
                                   tasks: dict[str, Any]) -> None:
    result = tasks["add"].delay(2, y=3)
    assert isinstance(result, AsyncResult)
    row = job_row(db, result.id)
    assert row is not None
    assert (row["task"], row["queue"], row["state"]) == ("t.add", "default", "queued")
    assert (row["args"], row["kwargs"], row["priority"]) == ([2], {"y": 3}, 0)
    assert row["max_retries"] == 3 and row["expires_at"] is None
    assert result.state == "PENDING"


def test_task_options_are_the_defaults_of_its_jobs(db: psycopg.Connection[Any],
                                                   tasks: dict[str, Any]) -> None:
    row = job_row(db, tasks["routed"].delay().id)
    assert row is not None
    assert (row["queue"], row["priority"], row["max_retries"]) == ("special", 4, 7)


def test_later_changes_of_settings_and_task_defaults_reach_the_next_delay(
        app: App, db: psycopg.Connection[Any], tasks: dict[str, Any]) -> None:
    add = tasks["add"]
    assert job_row(db, add.delay(1, 1).id)["queue"] == "default"  # type: ignore[index]
    app.conf.task_default_queue = "moved"
    assert job_row(db, add.delay(1, 1).id)["queue"] == "moved"  # type: ignore[index]
    add.priority = 6
    row = job_row(db, add.delay(1, 1).id)
    assert row is not None and (row["queue"], row["priority"]) == ("moved", 6)
    add.expires = 60  # counted from each send, so never taken from a cached builder
    first, second = (job_row(db, add.delay(1, 1).id) for _ in range(2))
    assert first is not None and second is not None
    assert first["expires_at"] < second["expires_at"]


def test_apply_async_options(db: psycopg.Connection[Any], tasks: dict[str, Any]) -> None:
    add = tasks["add"]
    before = datetime.now(timezone.utc)
    result = add.apply_async((1, 2), countdown=30, expires=120, priority=9, queue="fast",
                             task_id="0190a1b2-0000-7000-8000-000000000001",
                             ignore_result=True)
    assert result.id == "0190a1b2-0000-7000-8000-000000000001"
    row = job_row(db, result.id)
    assert row is not None
    assert (row["state"], row["queue"], row["priority"]) == ("scheduled", "fast", 9)
    assert row["ignore_result"] is True
    assert before + timedelta(seconds=29.9) <= row["run_at"] <= before + timedelta(seconds=31)
    assert before + timedelta(seconds=119.9) <= row["expires_at"] <= before + timedelta(
        seconds=121)


def test_apply_async_eta_and_expires_datetime(db: psycopg.Connection[Any],
                                              tasks: dict[str, Any]) -> None:
    eta = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
    expires = eta + timedelta(minutes=5)
    row = job_row(db, tasks["add"].apply_async((1, 2), eta=eta, expires=expires).id)
    assert row is not None
    assert row["state"] == "scheduled"
    assert row["run_at"] == eta and row["expires_at"] == expires
    assert datetime.fromisoformat(row["options"]["eta"]) == eta


def test_eta_in_the_past_is_queued_at_once(db: psycopg.Connection[Any],
                                           tasks: dict[str, Any]) -> None:
    eta = datetime.now(timezone.utc) - timedelta(minutes=1)
    row = job_row(db, tasks["add"].apply_async((1, 2), eta=eta).id)
    assert row is not None and row["state"] == "queued"


def test_send_task_by_name_needs_no_import(app: App, db: psycopg.Connection[Any]) -> None:
    result = app.send_task("elsewhere.task", args=[1], kwargs={"a": [1, 2]}, queue="other",
                           priority=2)
    row = job_row(db, result.id)
    assert row is not None
    assert (row["task"], row["args"], row["kwargs"]) == ("elsewhere.task", [1], {"a": [1, 2]})
    assert (row["queue"], row["priority"]) == ("other", 2)


def test_task_routes_choose_the_queue(app: App, db: psycopg.Connection[Any]) -> None:
    app.conf.task_routes = {"reports.*": {"queue": "reports"}, "mail.send": "mail"}
    assert job_row(db, app.send_task("reports.monthly").id)["queue"] == "reports"  # type: ignore[index]
    assert job_row(db, app.send_task("mail.send").id)["queue"] == "mail"  # type: ignore[index]
    assert job_row(db, app.send_task("x.y", queue="explicit").id)["queue"] == "explicit"  # type: ignore[index]


def test_duplicate_task_id_of_a_live_job_is_a_clear_error(tasks: dict[str, Any]) -> None:
    first = tasks["add"].apply_async((1, 2))
    with pytest.raises(PgQueueError, match="already exists"):
        tasks["add"].apply_async((1, 2), task_id=first.id)


def test_apply_many_inserts_every_row_with_one_statement_and_one_notify(
    pg_dsn: str, schema: str, db: psycopg.Connection[Any], tasks: dict[str, Any],
    listener: psycopg.Connection[Any],
) -> None:
    calls: list[tuple[tuple[int, int], dict[str, Any]]] = [((i, i), {}) for i in range(200)]
    results = tasks["add"].apply_many(calls, priority=3)
    assert len(results) == 200 and len({r.id for r in results}) == 200
    rows = db.execute("SELECT id::text, args, priority, state, xmin::text, created_at "
                      "FROM jobs").fetchall()
    assert {r[0] for r in rows} == {r.id for r in results}
    assert sorted(r[1] for r in rows) == sorted([i, i] for i in range(200))
    assert {(r[2], r[3]) for r in rows} == {(3, "queued")}
    # One transaction (same xmin, same now()) ...
    assert len({r[4] for r in rows}) == 1 and len({r[5] for r in rows}) == 1
    # ... and one notification for the queue, not one per row.
    assert notifications_until_sentinel(pg_dsn, schema, listener) == ["default"]


def test_apply_many_accepts_bare_args(db: psycopg.Connection[Any],
                                      tasks: dict[str, Any]) -> None:
    results = tasks["add"].apply_many([(1, 2), [3, 4], ((5,), {"y": 6})])
    args = {r.id: job_row(db, r.id)["args"] for r in results}  # type: ignore[index]
    assert [args[r.id] for r in results] == [[1, 2], [3, 4], [5]]


def test_send_many_by_name(app: App, db: psycopg.Connection[Any], pg_dsn: str, schema: str,
                           listener: psycopg.Connection[Any]) -> None:
    results = app.send_many("remote.task", [((i,), {"k": i}) for i in range(5)], queue="q2")
    assert count(db, "jobs") == 5
    rows = db.execute("SELECT task, queue FROM jobs").fetchall()
    assert set(rows) == {("remote.task", "q2")}
    assert len(results) == 5
    assert notifications_until_sentinel(pg_dsn, schema, listener) == ["q2"]


def test_a_single_enqueue_notifies_its_queue(pg_dsn: str, schema: str, tasks: dict[str, Any],
                                             listener: psycopg.Connection[Any]) -> None:
    tasks["add"].apply_async((1, 1), queue="alpha")
    tasks["add"].apply_async((1, 1), countdown=60)  # scheduled: nothing to wake yet
    assert notifications_until_sentinel(pg_dsn, schema, listener) == ["alpha"]


def test_non_json_argument_writes_nothing(db: psycopg.Connection[Any],
                                          tasks: dict[str, Any]) -> None:
    with pytest.raises(TypeError) as error:
        tasks["add"].delay(1, object())
    assert "t.add" in str(error.value) and "argument 1" in str(error.value)
    with pytest.raises(TypeError, match="keyword argument 'y'"):
        tasks["add"].apply_async((1,), {"y": datetime.now()})
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [((i, i), {}) for i in range(10)]
    calls.append(((1, {1, 2}), {}))
    with pytest.raises(TypeError, match=r"argument 1 \(set\)"):
        tasks["add"].apply_many(calls)
    assert count(db, "jobs") == 0


def test_nan_is_not_json(db: psycopg.Connection[Any], tasks: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="argument 0"):
        tasks["add"].delay(float("nan"), 1)
    assert count(db, "jobs") == 0


# -- enqueueing inside the caller's transaction ---------------------------------------------

def test_psycopg_connection_commit_runs_the_job(app: App, pg_dsn: str,
                                                db: psycopg.Connection[Any],
                                                tasks: dict[str, Any]) -> None:
    with running_worker(app, concurrency=2), psycopg.connect(pg_dsn) as conn:
        result = tasks["add"].apply_async((20, 22), connection=conn)
        assert job_row(db, result.id) is None  # not visible before the commit
        conn.commit()
        assert result.get(timeout=10) == 42


def test_psycopg_connection_rollback_means_the_job_never_existed(
    app: App, pg_dsn: str, db: psycopg.Connection[Any], tasks: dict[str, Any]
) -> None:
    with running_worker(app, concurrency=2):
        with psycopg.connect(pg_dsn) as conn:
            ghost = tasks["add"].apply_async((1, 1), connection=conn)
            ghosts = tasks["add"].apply_many([((2, 2), {})] * 3, connection=conn)
            conn.rollback()
        assert tasks["add"].delay(0, 1).get(timeout=10) == 1  # the worker is draining
    for result in [ghost, *ghosts]:
        assert job_row(db, result.id) is None
        assert result.state == "PENDING"
    assert count(db, "results") == 1


def test_psycopg_transaction_block(app: App, pg_dsn: str, tasks: dict[str, Any]) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        with pytest.raises(ZeroDivisionError), conn.transaction():
            rolled_back = tasks["add"].apply_async((1, 1), connection=conn)
            1 / 0  # noqa: B018
        with conn.transaction():
            committed = tasks["add"].apply_async((2, 2), connection=conn)
    with running_worker(app):
        assert committed.get(timeout=10) == 4
    assert rolled_back.state == "PENDING"


sqlalchemy = pytest.importorskip("sqlalchemy")


@pytest.fixture
def engine(pg_dsn: str) -> Iterator[Any]:
    engine = sqlalchemy.create_engine("postgresql+psycopg://",
                                      creator=lambda: psycopg.connect(pg_dsn))
    yield engine
    engine.dispose()


def test_sqlalchemy_connection_commit_as_you_go(app: App, engine: Any,
                                                db: psycopg.Connection[Any],
                                                tasks: dict[str, Any]) -> None:
    with engine.connect() as conn:
        kept = tasks["add"].apply_async((1, 2), connection=conn)
        conn.commit()
        dropped = tasks["add"].apply_async((3, 4), connection=conn)
        conn.rollback()
    assert job_row(db, kept.id) is not None
    assert job_row(db, dropped.id) is None


def test_sqlalchemy_connection_begin_block(app: App, engine: Any, db: psycopg.Connection[Any],
                                           tasks: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("SELECT 1"))
        kept = tasks["add"].apply_async((1, 2), connection=conn)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        dropped = tasks["add"].apply_async((3, 4), connection=conn)
        raise RuntimeError("the caller's transaction fails")
    assert job_row(db, kept.id) is not None
    assert job_row(db, dropped.id) is None


def test_sqlalchemy_session(app: App, engine: Any, db: psycopg.Connection[Any],
                            tasks: dict[str, Any]) -> None:
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        kept = tasks["add"].apply_async((1, 2), connection=session)
        results = tasks["add"].apply_many([((i, i), {}) for i in range(3)], connection=session)
        assert job_row(db, kept.id) is None
        session.commit()
        dropped = tasks["add"].apply_async((3, 4), connection=session)
        session.rollback()
    assert job_row(db, kept.id) is not None
    assert all(job_row(db, r.id) is not None for r in results)
    assert job_row(db, dropped.id) is None
    with running_worker(app, concurrency=2):
        assert kept.get(timeout=10) == 3
        wait_until(lambda: count(db, "results") == 4, message="all session jobs finished")


def test_unsupported_connection_object_is_a_clear_error(tasks: dict[str, Any]) -> None:
    with pytest.raises(PgQueueError, match="connection=object is not supported"):
        tasks["add"].apply_async((1, 2), connection=object())


def test_missing_schema_says_to_migrate(pg_dsn: str) -> None:
    from pgqueue import SchemaMissing

    app = App("nowhere", dsn=pg_dsn, schema="never_migrated_here", set_as_current=False)
    try:
        with pytest.raises(SchemaMissing, match="run `pgqueue migrate`"):
            app.send_task("x.y")
        with pytest.raises(SchemaMissing, match="never_migrated_here"):
            app.AsyncResult("01900000-0000-7000-8000-000000000000").state  # noqa: B018
    finally:
        app.close()


def test_database_down_is_one_clear_error() -> None:
    from pgqueue import DatabaseUnavailable

    app = App("down", dsn="postgresql://postgres@127.0.0.1:1/postgres", set_as_current=False)
    with pytest.raises(DatabaseUnavailable, match="cannot connect to PostgreSQL at "
                                                  "postgres@127.0.0.1:1/postgres"):
        app.send_task("x.y")


def test_naive_eta_is_read_in_the_app_timezone(app: App, db: Any) -> None:
    @app.task
    def later() -> None:
        return None

    naive_utc = (datetime.now(timezone.utc) + timedelta(hours=1)).replace(tzinfo=None)
    result = later.apply_async(eta=naive_utc)  # what ported `datetime.utcnow() + …` passes
    (run_at,) = db.execute("SELECT run_at FROM jobs WHERE id = %s", [result.id]).fetchone()
    assert run_at == naive_utc.replace(tzinfo=timezone.utc)


def test_values_reach_the_row_as_given(app: App, db: psycopg.Connection[Any]) -> None:
    """Arguments, dates, priority and ids arrive in the row unchanged (the one-row insert
    binds each as its own parameter)."""
    @app.task(name="t.echo")
    def echo(*args: Any, **kwargs: Any) -> None:
        return None

    eta = datetime(2031, 2, 3, 4, 5, 6, 789000, tzinfo=timezone.utc)
    parent = app.AsyncResult("01900000-0000-7000-8000-0000000000ab")
    result = echo.apply_async(args=["é☃", 2**40, 1.5, None, True], kwargs={"k": "'\";\\"},
                              eta=eta, priority=9, expires=eta + timedelta(hours=1),
                              parent_id=parent.id)
    row = db.execute("SELECT args, kwargs, run_at, priority, expires_at - run_at, "
                     "parent_id::text, state FROM jobs WHERE id = %s", [result.id]).fetchone()
    assert row == (["é☃", 2**40, 1.5, None, True], {"k": "'\";\\"}, eta, 9,
                   timedelta(seconds=3600), parent.id, "scheduled")
