"""A schema name that needs quoting works end to end, and two schemas do not mix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pgqueue import App
from tests.conftest import running_worker
from tests.pgserver import fresh_schema


@pytest.fixture
def odd_schema(pg_dsn: str) -> Iterator[str]:
    with fresh_schema(pg_dsn, "Odd Schema-") as name:
        yield name


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
