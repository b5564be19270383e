"""A schema name that needs quoting works end to end, and two schemas do not mix."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from pgqueue import App, migrations
from tests.conftest import running_worker


@pytest.fixture
def odd_schema(pg_dsn: str) -> Iterator[str]:
    name = f"Odd Schema-{uuid.uuid4().hex[:8]}"
    migrations.migrate(pg_dsn, name)
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def test_a_quoted_schema_name_runs_jobs(pg_dsn: str, odd_schema: str) -> None:
    app = App("odd", dsn=pg_dsn, schema=odd_schema, set_as_current=False)

    @app.task
    def echo(value: str) -> str:
        return value

    try:
        with running_worker(app):
            assert echo.delay("ok").get(timeout=10, interval=30) == "ok"
            assert echo.apply_async(("later",), countdown=0.3).get(timeout=10) == "later"
    finally:
        app.close()


def test_two_schemas_in_one_database_do_not_share_jobs(pg_dsn: str, schema: str,
                                                      odd_schema: str) -> None:
    first = App("first", dsn=pg_dsn, schema=schema, set_as_current=False)
    second = App("second", dsn=pg_dsn, schema=odd_schema, set_as_current=False)
    ran: list[str] = []

    @first.task(name="shared.name")
    def in_first() -> str:
        ran.append("first")
        return "first"

    @second.task(name="shared.name")
    def in_second() -> str:
        ran.append("second")
        return "second"

    try:
        waiting = in_second.delay()
        with running_worker(first):
            assert in_first.delay().get(timeout=10) == "first"
        assert waiting.state == "PENDING"
        with running_worker(second):
            assert waiting.get(timeout=10) == "second"
        assert sorted(ran) == ["first", "second"]
    finally:
        first.close()
        second.close()
