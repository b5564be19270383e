"""``delay()`` without options after the first send of a task: the short way
(``producer.send_plain``, the one-row ``db.Statement``, parked pool connections) must
write the row the general way writes, refuse what it refuses, and survive what the pool
survives: a dead connection, threads waiting for a connection, a fork, a DEALLOCATE."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import pgqueue.app
from pgqueue import App, signals
from pgqueue.client import producer
from pgqueue.db.connection import Parking, Statement
from tests.conftest import wait_until

COLUMNS = ("queue, task, args, kwargs, state, priority, expires_at, max_retries, parent_id, "
           "root_id, group_id, ignore_result, options, headers, task_id, unique_key")


def row_of(db: psycopg.Connection[Any], job_id: str) -> tuple[Any, ...]:
    found = db.execute(f"SELECT {COLUMNS} FROM jobs WHERE id = %s", [job_id]).fetchone()
    assert found is not None, job_id
    return tuple(found)


def jobs(db: psycopg.Connection[Any]) -> int:
    return int(db.execute("SELECT count(*) FROM jobs").fetchone()[0])  # type: ignore[index]


@pytest.fixture
def direct_app(direct_dsn: str, schema: str) -> Iterator[App]:
    """An app on the direct DSN: these tests look at the server sessions of its pool."""
    application = App("tests", dsn=direct_dsn, schema=schema)
    yield application
    application.close()


def no_general_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on a send that leaves the short way fails the test."""
    def general(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the send took the general way (build_rows)")

    monkeypatch.setattr(pgqueue.app, "build_rows", general)


def test_the_short_way_writes_the_general_way_s_row(app: App, db: psycopg.Connection[Any],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    @app.task(name="t.routed", queue="special", priority=4, max_retries=7, time_limit=30,
              ignore_result=True)
    def routed(*args: Any, **kwargs: Any) -> None: ...

    general = routed.delay(1, "two", {"three": [3.5, None]}, key="é\u2028")
    no_general_way(monkeypatch)
    short = routed.delay(1, "two", {"three": [3.5, None]}, key="é\u2028")
    assert short.id != general.id and short.task_name == "t.routed"
    assert row_of(db, short.id) == row_of(db, general.id)
    assert routed.delay().id  # no arguments: the encoder is skipped
    assert routed.apply_async().id and routed.apply_async([], {}).id
    assert jobs(db) == 5


@pytest.mark.parametrize(("args", "kwargs", "error", "says"), [
    ((object(),), {}, TypeError, "argument 0 (object)"),
    (([[[[1]]]],), {}, ValueError, "nests lists and dicts more than 3 levels deep"),
    (("a\x00b",), {}, ValueError, "jsonb takes no NUL character"),
    ((), {"big": "x" * 2_000}, ValueError, "over task_max_args_bytes (1,000)"),
    ((float("nan"),), {}, TypeError, "argument 0 (float) is not JSON"),
    ((), {1: "one"}, TypeError, "keyword names must be strings"),
    (5, {}, TypeError, "args must be a list or tuple"),
])
def test_hostile_arguments_are_refused_in_one_line_and_nothing_is_written(
        app: App, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch, args: Any,
        kwargs: Any, error: type[Exception], says: str) -> None:
    app.conf.task_max_args_bytes = 1_000
    app.conf.task_max_args_depth = 3

    @app.task(name="t.take")
    def take(*args: Any, **kwargs: Any) -> None: ...

    take.delay("warm")  # the general way, which caches the task's builder
    no_general_way(monkeypatch)
    with pytest.raises(error) as caught:
        take.apply_async(args, kwargs)
    assert says in str(caught.value) and "\n" not in str(caught.value)
    assert jobs(db) == 1
    take.delay("still fine")
    assert jobs(db) == 2


def test_what_changes_after_the_first_send_is_honoured(app: App, db: psycopg.Connection[Any],
                                                       pg_dsn: str) -> None:
    @app.task(name="t.echo")
    def echo(x: int) -> None: ...

    echo.delay(0)
    echo.queue = "moved"  # a task attribute: its builder is made again
    assert row_of(db, echo.delay(1).id)[0] == "moved"
    app.conf.task_default_priority = 6  # a setting: the same
    assert row_of(db, echo.delay(2).id)[5] == 6

    seen: list[Any] = []

    def receiver(sender: Any = None, headers: Any = None, **kwargs: Any) -> None:
        seen.append(headers["id"])
        headers["added"] = "by a receiver"

    signals.before_task_publish.connect(receiver)
    try:
        sent = echo.delay(3)
    finally:
        signals.before_task_publish.disconnect(receiver)
    assert seen == [sent.id] and row_of(db, sent.id)[13] == {"added": "by a receiver"}

    with psycopg.connect(pg_dsn) as conn:  # not committed: the job is not there
        app.connection_provider = lambda: conn
        try:
            inside = echo.delay(4)
        finally:
            app.connection_provider = None
        conn.rollback()
    assert db.execute("SELECT 1 FROM jobs WHERE id = %s", [inside.id]).fetchone() is None
    assert jobs(db) == 4


def app_backends(db: psycopg.Connection[Any], schema: str) -> set[int]:
    return {pid for pid, in db.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
        [f"pgqueue:{schema}:app"])}


def test_a_dead_pooled_connection_is_replaced(direct_app: App, db: psycopg.Connection[Any],
                                              schema: str) -> None:
    @direct_app.task(name="t.noop")
    def noop() -> None: ...

    noop.delay()
    noop.delay()  # the short way, on the connection the first one parked
    before = app_backends(db, schema)
    assert before
    db.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid",
               [sorted(before)])
    wait_until(lambda: not app_backends(db, schema), message="the app's sessions gone")
    sent = noop.delay()  # the parked connection is dead: the pool is checked, sent again
    assert db.execute("SELECT count(*) FROM jobs WHERE id = %s", [sent.id]).fetchone() == (1,)
    assert not app_backends(db, schema) & before
    assert jobs(db) == 3


def test_threads_waiting_for_the_only_connection_all_get_it(
        pg_dsn: str, schema: str, db: psycopg.Connection[Any]) -> None:
    """One pooled connection for 4 threads: a thread that waits in the pool gets the
    connection given back (it is not parked past it), or the pool's 10 s timeout fails
    the send."""
    app = App("tests", dsn=pg_dsn, schema=schema, producer_pool_size=1)

    @app.task(name="t.noop")
    def noop(i: int) -> None: ...

    noop.delay(-1)
    errors: list[BaseException] = []

    def send() -> None:
        try:
            for i in range(50):
                noop.delay(i)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    app.close()
    assert errors == [] and jobs(db) == 201


def test_a_forked_child_sends_on_connections_of_its_own(
        direct_app: App, db: psycopg.Connection[Any]) -> None:
    @direct_app.task(name="t.noop")
    def noop(who: str) -> None: ...

    noop.delay("parent")
    noop.delay("parent")
    with direct_app.connection() as conn:  # the parked connection
        parent_backend = conn.info.backend_pid
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its backend, or the error
        try:
            noop.delay("child")
            with direct_app.connection() as conn:
                report = {"backend": conn.info.backend_pid}
            direct_app.close()
        except BaseException as e:
            report = {"error": repr(e)}
        os.write(write, json.dumps(report).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert "error" not in report and report["backend"] != parent_backend
    noop.delay("parent again")  # the parent's connection is untouched by the child
    with direct_app.connection() as conn:
        assert conn.info.backend_pid == parent_backend
    assert db.execute("SELECT args->>0, count(*) FROM jobs GROUP BY 1 ORDER BY 1").fetchall() \
        == [("child", 1), ("parent", 2), ("parent again", 1)]


def prepared(app: App) -> list[str]:
    with app.connection() as conn:
        return [name for name, in conn.execute(
            "SELECT name FROM pg_prepared_statements WHERE name LIKE 'pgqueue%%'")]


def test_the_insert_is_prepared_once_per_connection_or_not_at_all(
        direct_dsn: str, schema: str, db: psycopg.Connection[Any]) -> None:
    app = App("tests", dsn=direct_dsn, schema=schema)

    @app.task(name="t.noop")
    def noop() -> None: ...

    for _ in range(3):
        noop.delay()
    assert prepared(app) == [Statement.of(app.queries["job_insert_one"]).name.decode()]
    with app.connection() as conn:  # someone drops it: prepared again, sent once
        conn.execute("DEALLOCATE ALL")
    noop.delay()
    assert len(prepared(app)) == 1
    with app.connection() as conn:  # the session has it, the connection forgot: kept
        conn._pgqueue_state.prepared.clear()  # type: ignore[attr-defined]
    noop.delay()
    assert len(prepared(app)) == 1
    app.close()

    unprepared = App("tests", dsn=direct_dsn, schema=schema, transaction_pooling=True)

    @unprepared.task(name="t.noop")
    def noop2() -> None: ...

    for _ in range(3):
        noop2.delay()
    assert prepared(unprepared) == []
    unprepared.close()
    assert jobs(db) == 8


def test_a_non_durable_producer_sends_with_synchronous_commit_off(
        direct_app: App, db: psycopg.Connection[Any]) -> None:
    direct_app.conf.producer_durable = False

    @direct_app.task(name="t.noop")
    def noop() -> None: ...

    noop.delay()
    noop.delay()
    with direct_app.connection() as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
    assert jobs(db) == 2


def test_the_short_way_is_only_taken_when_nothing_asks_for_the_general_one(app: App) -> None:
    @app.task(name="t.noop")
    def noop() -> None: ...

    assert producer.send_plain(app, "t.noop", noop, (), {}) is None  # no builder yet
    noop.delay()
    sent = producer.send_plain(app, "t.noop", noop, (), {})
    assert sent is not None and sent.task_name == "t.noop"
    app.conf.task_send_sent_event = True  # events are sent the general way
    noop.delay()
    assert producer.send_plain(app, "t.noop", noop, (), {}) is None


def test_a_statement_numbers_its_placeholders_once_each() -> None:
    statement = Statement(b"SELECT %(a)s, %(b)s, %(a)s, 'x%%'")
    assert statement.text == b"SELECT $1, $2, $1, 'x%'"
    assert statement.names == ("a", "b")
    with pytest.raises(ValueError, match="placeholders"):
        Statement(b"SELECT %s")


def test_a_connection_given_back_is_parked_for_the_next_use_for_a_while(
        direct_app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    @direct_app.task(name="t.noop")
    def noop() -> None: ...

    def pool_requests() -> int:
        return int(direct_app._get_pool().get_stats().get("requests_num", 0))

    noop.delay()
    before = pool_requests()
    for _ in range(5):
        noop.delay()
    assert pool_requests() == before  # parked between the sends: the pool is not asked
    monkeypatch.setattr(Parking, "SECONDS", 0.0)  # handed out too long ago: back it goes
    for _ in range(5):
        noop.delay()
    # the first takes the parked one, which goes back; the four others ask the pool
    assert pool_requests() == before + 4 and direct_app._parking.parked == []


def test_a_settings_change_and_close_leave_no_parked_connection_open(
        direct_app: App, db: psycopg.Connection[Any], schema: str) -> None:
    @direct_app.task(name="t.noop")
    def noop() -> None: ...

    noop.delay()
    noop.delay()
    assert app_backends(db, schema)
    direct_app.conf.producer_durable = False  # the pool is closed, the next use makes one
    wait_until(lambda: not app_backends(db, schema), message="the old pool's sessions gone")
    noop.delay()
    assert app_backends(db, schema)
    direct_app.close()
    wait_until(lambda: not app_backends(db, schema), message="every session closed")
    assert jobs(db) == 3
