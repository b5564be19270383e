"""The FastAPI example on a schema of its own (one per test process), with a real worker."""

from __future__ import annotations

import sys
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

# the example, its async SQLAlchemy (greenlet) and FastAPI's TestClient (httpx)
for module in ("fastapi", "greenlet", "httpx"):
    pytest.importorskip(module, reason="the FastAPI example's tests need `pip install '.[dev]'`")

from tests.pgserver import fresh_schema, test_database  # noqa: E402


@pytest.fixture(scope="session")
def api_schema() -> Iterator[tuple[str, str]]:
    # migrated here; the app adds its own table to the same schema
    with test_database() as dsn, fresh_schema(dsn, "fastapi_example_") as schema:
        yield dsn, schema
        from api_app import queue

        queue.close()


@pytest.fixture
def client(api_schema: tuple[str, str]) -> Iterator[Any]:
    """A TestClient on the example, its tables and the queue on the test schema, emptied."""
    import api_app
    from fastapi.testclient import TestClient

    dsn, schema = api_schema
    api_app.settings.update(url=dsn, search_path=schema)
    api_app.queue.conf.update(dsn=dsn, schema=schema)
    with TestClient(api_app.create_app()) as test_client:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("TRUNCATE {s}.signups, {s}.jobs, {s}.results").format(
                s=sql.Identifier(schema)))
        yield test_client
