"""Fixtures shared by every layer: a real Postgres, a fresh schema per test, workers."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgqueue import App
from pgqueue.worker import Worker

from .pgserver import fresh_schema, pgbouncer, test_database


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01,
               message: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def direct_dsn() -> Iterator[str]:
    """DSN of a database the tests own (see tests/pgserver.py for how it is found)."""
    with test_database() as dsn:
        yield dsn


@pytest.fixture(scope="session")
def pg_dsn(direct_dsn: str) -> Iterator[str]:
    """The DSN apps and workers use: ``direct_dsn``, or with PGQUEUE_TEST_VIA_PGBOUNCER set
    a PgBouncer of this session's own in transaction mode in front of it (``listen``: with
    PGQUEUE_LISTEN_DSN on the direct DSN; any other value: polling, no LISTEN)."""
    via = os.environ.get("PGQUEUE_TEST_VIA_PGBOUNCER")
    if not via:
        yield direct_dsn
        return
    if via == "listen":
        os.environ["PGQUEUE_LISTEN_DSN"] = direct_dsn
    with pgbouncer(direct_dsn) as dsn:
        yield dsn


@pytest.fixture
def schema(pg_dsn: str) -> Iterator[str]:
    """A fresh, migrated schema for this test alone, dropped afterwards."""
    with fresh_schema(pg_dsn, "t_") as name:
        yield name


@pytest.fixture
def app(pg_dsn: str, schema: str) -> Iterator[App]:
    application = App("tests", dsn=pg_dsn, schema=schema)
    yield application
    application.close()


@pytest.fixture
def db(direct_dsn: str, schema: str) -> Iterator[psycopg.Connection[Any]]:
    """A plain connection with search_path on the test schema, for asserting on rows
    (direct: a session SET does not survive a transaction pooler)."""
    with psycopg.connect(direct_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        yield conn


@contextmanager
def running_worker(app: App, **options: Any) -> Iterator[Worker]:
    """A worker running in a thread of this process until the block ends."""
    options.setdefault("install_signal_handlers", False)
    options.setdefault("shutdown_timeout", 5)
    worker = Worker(app, **options)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            worker.run()
        except BaseException as e:  # surfaced below
            errors.append(e)
            worker.started.set()

    thread = threading.Thread(target=target, name="test-worker", daemon=True)
    thread.start()
    assert worker.started.wait(10), "worker did not start"
    if errors:
        raise errors[0]
    wait_until(lambda: worker.listener.ready.is_set(), message="worker listening")
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(30)
        assert not thread.is_alive(), "worker did not stop"


@pytest.fixture
def worker_factory(app: App) -> Callable[..., Any]:
    return lambda **options: running_worker(app, **options)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "acceptance" in item.nodeid:
            item.add_marker(pytest.mark.acceptance)


os.environ.setdefault("PGQUEUE_TEST", "1")
