"""Refused at the door means nothing written; accepted at the edge means stored and run."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from pgqueue import App
from tests.conftest import running_worker
from tests.integration.cli.test_core_cli import TASKS, assert_one_line_error, pgqueue


def deep(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def count(db: psycopg.Connection[Any], table: str = "jobs") -> int:
    row = db.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 - fixed names
    assert row is not None
    return int(row[0])


# Values that reached Postgres before and failed there, or failed every later claim.
HOSTILE: list[dict[str, Any]] = [
    {"time_limit": 1e13}, {"lease": 1e300}, {"lease": "abc"}, {"soft_time_limit": math.nan},
    {"countdown": math.nan}, {"countdown": 1e13}, {"expires": math.inf},
    {"eta": datetime(1, 1, 1)}, {"priority": True}, {"max_retries": 2**40},
    {"queue": "q" * 9000}, {"queue": "a\x00b"}, {"task_id": "a\x00b"},
    {"task_id": "t" * 501}, {"parent_id": ""}, {"unique_key": "k" * 3000},
]


@pytest.mark.parametrize("options", HOSTILE, ids=[repr(o)[:30] for o in HOSTILE])
def test_a_refused_option_writes_nothing(app: App, db: psycopg.Connection[Any],
                                         options: dict[str, Any]) -> None:
    app.conf.timezone = "Asia/Tokyo"  # so that a naive year 1 overflows in UTC

    @app.task(name="echo")
    def echo(*args: Any) -> Any:
        return args

    (option,) = options
    sends = [lambda: echo.apply_async((1,), **options),
             lambda: app.send_task("echo", (1,), **options),
             lambda: echo.s(1).set(**options).delay()]
    if option not in ("task_id", "unique_key"):
        sends.append(lambda: echo.apply_many([(1,), (2,)], **options))
    for send in sends:
        with pytest.raises((ValueError, TypeError), match=option):
            send()
    assert count(db) == 0


@pytest.mark.parametrize(("args", "kwargs"), [
    ((deep(987),), {}), (("a\x00b",), {}), (("\udc80",), {}), ((), {1: 1}),
    (("x" * (10 * 1024 * 1024 + 1),), {}),
])
def test_refused_arguments_write_nothing(app: App, db: psycopg.Connection[Any],
                                         args: tuple[Any, ...], kwargs: dict[Any, Any]) -> None:
    @app.task(name="echo")
    def echo(*args: Any, **kwargs: Any) -> Any:
        return args

    with pytest.raises((ValueError, TypeError), match="echo"):
        echo.apply_async(args, kwargs)
    with pytest.raises((ValueError, TypeError), match="echo"):
        echo.apply_many([((1,), {}), (args, kwargs)])
    assert count(db) == 0


@pytest.mark.parametrize(("extra", "fragments"), [
    (["--countdown", "nan"], ["countdown must be a finite number of seconds"]),
    (["--expires", "inf"], ["expires must be a finite number"]),
    (["-Q", "q" * 300], ["queue must be a string of 1 to 200 characters"]),
    (["--args", json.dumps([deep(200)])], ["argument 0 (list) nests", "100 levels"]),
    (["--args", '["a\\u0000b"]'], ["argument 0 (str) holds text PostgreSQL cannot store"]),
])
def test_pgqueue_call_refuses_in_one_line(pg_dsn: str, schema: str,
                                          db: psycopg.Connection[Any], extra: list[str],
                                          fragments: list[str]) -> None:
    run = pgqueue("call", "tests.echo", *extra, dsn=pg_dsn, schema=schema)
    assert_one_line_error(run, *fragments)
    assert count(db) == 0


def test_a_schedule_with_a_hostile_option_is_not_added(pg_dsn: str, schema: str,
                                                       db: psycopg.Connection[Any]) -> None:
    run = pgqueue("schedule", "add", "nightly", "core.add",
                  "--every", "60", "--options", '{"lease": 1e300}', "-A", TASKS,
                  dsn=pg_dsn, schema=schema)
    assert_one_line_error(run, "lease must be a number of seconds above 0")
    assert count(db, "schedules") == 0


def test_values_at_the_edge_of_each_range_are_stored_and_run(
        app: App, db: psycopg.Connection[Any]) -> None:
    queue = "é" * 200  # 400 bytes, in the claim index and in every NOTIFY payload

    @app.task(name="echo", queue=queue, time_limit=365 * 24 * 3600)
    def echo(*args: Any, **kwargs: Any) -> Any:
        return [args, kwargs]

    args = (deep(100), "\u2603 \\u0000 is text")
    kwargs = {"k": "€" * 1000}
    one = echo.apply_async(args, kwargs, priority=9, max_retries=2**31 - 1,
                           unique_key="€" * 500, expires=timedelta(days=36_000))
    many = echo.apply_many([((n,), {}) for n in range(3)], countdown=-1e9)
    stored = db.execute("SELECT priority, max_retries, (options->>'lease')::float8 FROM jobs "
                        "WHERE id = %s", [one.id]).fetchone()
    assert stored == (9, 2**31 - 1, 365 * 24 * 3600)
    with running_worker(app, queues=[queue]):
        assert one.get(timeout=20) == [list(args), kwargs]
        assert [r.get(timeout=20) for r in many] == [[[n], {}] for n in range(3)]
