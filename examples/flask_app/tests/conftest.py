"""The Flask example on a schema of its own (one per test process), with a real worker."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

EXAMPLE = Path(__file__).resolve().parent.parent
REPO = EXAMPLE.parent.parent
for path in (str(EXAMPLE), str(REPO)):
    if path not in sys.path:
        sys.path.insert(0, path)

for module in ("flask", "flask_sqlalchemy"):
    pytest.importorskip(module, reason="the Flask example's tests need `pip install '.[dev]'`")

from tests.pgserver import fresh_schema, test_database  # noqa: E402


@pytest.fixture(scope="session")
def flask_schema() -> Iterator[tuple[str, str]]:
    with test_database() as dsn, fresh_schema(dsn, "flask_example_") as schema:
        yield dsn, schema
        from progress_app import queue

        queue.close()


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
