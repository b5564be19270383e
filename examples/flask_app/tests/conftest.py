"""The Flask example on a schema of its own (one per test process), with a real worker."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

EXAMPLE = Path(__file__).resolve().parent.parent
REPO = EXAMPLE.parent.parent
for path in (str(EXAMPLE), str(REPO)):
    if path not in sys.path:
        sys.path.insert(0, path)

pytest.importorskip("flask", reason="the Flask example needs `pip install flask`")

from pgqueue import migrations  # noqa: E402
from tests.pgserver import server_dsn, test_database_dsn  # noqa: E402


@pytest.fixture(scope="session")
def flask_schema() -> Iterator[tuple[str, str]]:
    with server_dsn() as (server, how):
        if not server:
            pytest.skip(how)
        dsn = test_database_dsn(server)
        schema = f"flask_example_{uuid.uuid4().hex[:10]}"
        migrations.migrate(dsn, schema)
        yield dsn, schema
        from progress_app import queue

        queue.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def flask_app(flask_schema: tuple[str, str]) -> Iterator[Any]:
    """The example app on the test schema, with fast steps and no jobs left from before."""
    from progress_app import create_app, queue

    dsn, schema = flask_schema
    app = create_app({"TESTING": True, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": schema,
                      "LONGTASK_TOTAL": 8, "LONGTASK_STEP_SECONDS": 0.15})
    with queue.connection() as conn:
        conn.execute(sql.SQL("TRUNCATE {}.jobs, {}.results").format(
            sql.Identifier(schema), sql.Identifier(schema)))
    yield app
