"""pgqueue through PgBouncer in transaction pooling mode (Debian's 1.18: no prepared
statements across transactions). Each test module starts its own pgbouncer on a free
port (tests/pgserver.py) and skips when the binary is absent.

Run the existing suites through it too: ``PGQUEUE_TEST_VIA_PGBOUNCER=1 pytest ...``
(polling) or ``=listen`` (LISTEN on the direct DSN); see docs/deploying.md."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgqueue import App, Task, db
from pgqueue.db import connection
from pgqueue.exceptions import ConfigurationError

from ...conftest import running_worker, wait_until
from ...pgserver import pgbouncer


@pytest.fixture(scope="module")
def bouncer(direct_dsn: str) -> Iterator[str]:
    with pgbouncer(direct_dsn) as dsn:
        yield dsn


@pytest.fixture(params=["listen_dsn", "polling"])
def pooled_app(request: pytest.FixtureRequest, bouncer: str, direct_dsn: str, schema: str,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.delenv("PGQUEUE_LISTEN_DSN", raising=False)
    listen = direct_dsn if request.param == "listen_dsn" else None
    application = App("bounced", dsn=bouncer, schema=schema, listen_dsn=listen,
                      worker_poll_interval=0.2)
    yield application
    application.close()


def test_a_pooler_is_found_and_a_direct_server_is_not(bouncer: str, direct_dsn: str) -> None:
    assert db.through_pooler(bouncer)
    assert not db.through_pooler(direct_dsn)
    assert db.prepare_threshold(bouncer) is None
    assert db.prepare_threshold(direct_dsn) == 5
    with db.connect(bouncer) as conn:
        assert conn.prepare_threshold is None
        for i in range(20):  # psycopg would prepare at the 5th: "_pg3_0 already exists"
            assert conn.execute("SELECT %s::int", [i]).fetchone() == (i,)


def test_the_setting_overrides_detection(bouncer: str, direct_dsn: str, schema: str) -> None:
    App("declared", dsn=direct_dsn, schema=schema, transaction_pooling=True).dsn  # noqa: B018
    try:
        assert db.through_pooler(direct_dsn)
        with db.connect(direct_dsn) as conn:
            assert conn.prepare_threshold is None
    finally:
        db.declare_pooling(direct_dsn, "auto")
    assert not db.through_pooler(direct_dsn)


def test_the_core_path_works_through_pgbouncer(pooled_app: App, direct_dsn: str) -> None:
    app = pooled_app
    proceed = threading.Event()
    stop_spinning = threading.Event()

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="t.progress", bind=True)
    def progress(self: Task) -> str:
        self.update_state(state="PROGRESS", meta={"done": 1})
        assert proceed.wait(30)
        return "finished"

    @app.task(name="t.spin")
    def spin() -> None:
        while not stop_spinning.is_set():
            time.sleep(0.01)

    with running_worker(app) as worker:
        assert worker.listener.polling == (app.conf.listen_dsn is None)
        results = [add.delay(i, i) for i in range(30)]  # past psycopg's prepare threshold
        assert [r.get(timeout=30) for r in results] == [2 * i for i in range(30)]

        running = progress.delay()
        wait_until(lambda: running.state == "PROGRESS", timeout=30, message="PROGRESS")
        assert running.info == {"done": 1}
        proceed.set()
        assert running.get(timeout=30) == "finished"

        later = add.apply_async((1, 1), countdown=3600)
        later.revoke()
        assert later.state == "REVOKED"

        spinning = spin.delay()
        wait_until(lambda: spinning.state == "STARTED" or worker.holdings, timeout=30,
                   message="the spinning job to start")
        spinning.revoke(terminate=True)  # reaches the worker by NOTIFY or by its poll
        wait_until(lambda: spinning.state == "REVOKED", timeout=30, message="terminated")
        stop_spinning.set()
    with psycopg.connect(direct_dsn, autocommit=True) as conn:
        left = conn.execute(f'SELECT count(*) FROM "{app.schema}".jobs').fetchone()
    assert left == (0,)


def test_beat_and_the_leader_work_through_pgbouncer(pooled_app: App) -> None:
    app = pooled_app
    seen: list[int] = []

    @app.task(name="t.count")
    def count(n: int) -> int:
        seen.append(n)
        return n

    app.conf.beat_schedule = {"count": {"task": "t.count", "schedule": 0.5, "args": [7]}}
    with running_worker(app, beat=True) as worker:
        wait_until(lambda: len(seen) >= 3, timeout=30, message="three scheduled runs")
        assert worker.maintenance.election.is_leader
        # the leader's services ran their statements through the pooler too
        due = app.send_task("t.count", (8,), countdown=0.5)  # staged by the leader
        assert due.get(timeout=30) == 8


def test_worker_session_settings_stay_in_their_transaction(direct_dsn: str) -> None:
    """One server session for every client: a claimer's synchronous_commit=off must not
    reach the next client's commits."""
    read = b"SELECT current_setting('synchronous_commit'), current_setting('enable_seqscan')"
    with pgbouncer(direct_dsn, pool_size=1) as single:
        claimer = connection.Dedicated(single, "public", "claimer", durable=False,
                                       indexed_plans=True)
        try:
            for _ in range(10):
                assert claimer.execute(read) == [("off", "off")]
            assert claimer.execute(read + b" -- a comment at the end") == [("off", "off")]
            assert claimer.execute(b"SELECT %(v)s::text", {"v": "it's; COMMIT"}) == [
                ("it's; COMMIT",)]  # parameters are bound as literals, quoted
            with db.connect(single) as other:
                for _ in range(10):
                    assert other.execute(read).fetchone() == ("on", "on")
            with pytest.raises(psycopg.errors.DivisionByZero):
                claimer.execute(b"SELECT 1 / 0")
            assert claimer.execute(read) == [("off", "off")]  # the failed one rolled back
        finally:
            claimer.close()


def test_a_listener_without_a_dsn_polls() -> None:
    calls: list[float] = []
    listener = connection_listener(lambda: calls.append(time.monotonic()))
    listener.start()
    try:
        assert listener.ready.wait(5)
        wait_until(lambda: len(calls) >= 3, timeout=10, message="three polls")
    finally:
        listener.stop()
        listener.join(5)
    assert not listener.is_alive()


def connection_listener(on_poll: Any) -> Any:
    from pgqueue.db.listener import Listener

    return Listener(None, ["unused"], lambda channel, payload: None, on_poll,
                    poll_interval=0.05)


@pytest.mark.parametrize(("name", "value"), [
    ("transaction_pooling", "yes"), ("transaction_pooling", 1), ("transaction_pooling", None),
    ("listen_dsn", "redis://localhost:6379/0"), ("listen_dsn", "not a dsn"),
    ("producer_durable", "false"), ("producer_durable", 0),
])
def test_bad_values_are_refused_in_one_line(name: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as caught:
        App("bad", dsn="postgresql://localhost/x", **{name: value})
    message = str(caught.value)
    assert "\n" not in message
    assert name in message or "postgresql://" in message


def test_the_listen_dsn_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    app = App("env", dsn="postgresql://localhost/x")
    monkeypatch.setenv("PGQUEUE_LISTEN_DSN", "postgresql://direct/x")
    assert app.listen_dsn == "postgresql://direct/x"
    monkeypatch.setenv("PGQUEUE_LISTEN_DSN", "amqp://guest@rabbit//")
    with pytest.raises(ConfigurationError, match="PGQUEUE_LISTEN_DSN"):
        app.listen_dsn  # noqa: B018


def test_a_non_durable_producer_is_refused_through_a_pooler(bouncer: str, schema: str) -> None:
    app = App("fast", dsn=bouncer, schema=schema, producer_durable=False)

    @app.task(name="t.noop")
    def noop() -> None: ...

    with pytest.raises(ConfigurationError, match="ALTER ROLE"):
        noop.delay()
    app.close()


def test_a_non_durable_producer_turns_synchronous_commit_off(app: App) -> None:
    @app.task(name="t.noop")
    def noop() -> None: ...

    def setting() -> Any:
        with app.connection() as conn:
            return conn.execute("SHOW synchronous_commit").fetchone()

    assert setting() == ("on",)
    app.conf.producer_durable = False  # the pool is remade with the new setting
    assert setting() == ("off",)
    noop.delay()
    app.conf.producer_durable = True
    assert setting() == ("on",)
