"""A worker stopped in a process that goes on (a test, an embedding app) gives back every
connection it opened: each one leaked holds a slot of max_connections for good."""

from __future__ import annotations

from typing import Any

import psycopg

from pgqueue import App
from tests.conftest import running_worker, wait_until


def _open(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    rows = conn.execute("SELECT application_name FROM pg_stat_activity"
                        " WHERE application_name LIKE %s AND pid <> pg_backend_pid()",
                        [f"pgqueue:{schema}:%"]).fetchall()
    return sorted(name for (name,) in rows if not name.endswith((":app", ":results")))


def test_a_stopped_worker_leaves_no_connection_open(app: App, schema: str,
                                                   db: psycopg.Connection[Any]) -> None:
    @app.task(name="conn.add")
    def add(x: int, y: int) -> int:
        return x + y

    with running_worker(app, concurrency=2):
        assert add.delay(2, 3).get(timeout=20) == 5
        assert any(name.endswith(":finisher") for name in _open(db, schema))
    wait_until(lambda: not _open(db, schema), timeout=20,
               message=f"the worker's connections closed: {_open(db, schema)}")
