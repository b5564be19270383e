"""Flow control with a worker in this process: limits from the code and at run time,
what `pgqueue queue` shows, and the inputs that are refused."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgqueue import App
from pgqueue.cli import main
from pgqueue.exceptions import ConfigurationError
from pgqueue.flow import UnknownQueue
from tests.conftest import running_worker, wait_until


def started_count(db: psycopg.Connection[Any], task: str) -> int:
    return int(db.execute(
        "SELECT (SELECT count(*) FROM results WHERE task = %(t)s)"
        " + (SELECT count(*) FROM jobs WHERE task = %(t)s AND state = 'started')",
        {"t": task}).fetchone()[0])


def limit_row(db: psycopg.Connection[Any], scope: str, name: str) -> Any:
    return db.execute("SELECT paused, concurrency, rate_count, rate_seconds, source"
                      " FROM flow_limits WHERE scope = %s AND name = %s",
                      [scope, name]).fetchone()


@pytest.mark.parametrize("rate", ["abc", "0/s", "-1/m", 1e300, "1e300/s", "10/d", "nan",
                                  "inf", 0, -5, True, [10], "/s", "1/s/s"])
def test_bad_rates_are_refused_in_one_line(app: App, rate: Any) -> None:
    for attempt in (lambda: app.control.rate_limit("t.x", rate),
                    lambda: app.task(rate_limit=rate)(lambda: None),
                    lambda: app.conf.update(task_default_rate_limit=rate)):
        with pytest.raises((ValueError, TypeError, ConfigurationError)) as error:
            attempt()
        message = str(error.value)
        assert "\n" not in message and "rate" in message, message


@pytest.mark.parametrize("limit", [0, -1, 10**9, 2.5, "3", None, True])
def test_bad_concurrency_limits_are_refused(app: App, db: psycopg.Connection[Any],
                                            limit: Any) -> None:
    app.send_task("t.x")  # the queue exists
    if limit is not None:  # None removes a queue's limit: accepted
        with pytest.raises((ValueError, ConfigurationError)) as error:
            app.control.queue_limit("default", limit)
        assert "concurrency" in str(error.value)
    with pytest.raises((ValueError, ConfigurationError)):
        app.conf.update(queue_concurrency={"default": limit})
    if limit is not None:
        with pytest.raises((ValueError, TypeError)):
            app.task(concurrency_limit=limit)(lambda: None)
    assert limit_row(db, "queue", "default") is None or limit is None


def test_unknown_queues_are_refused_unless_created(app: App,
                                                   db: psycopg.Connection[Any]) -> None:
    for act in (app.control.pause_queue, app.control.resume_queue,
                lambda q: app.control.queue_limit(q, 3)):
        with pytest.raises(UnknownQueue, match="unknown queue 'nope'"):
            act("nope")
    assert db.execute("SELECT count(*) FROM flow_limits").fetchone()[0] == 0
    app.control.pause_queue("nope", create=True)
    assert limit_row(db, "queue", "nope")[0] is True
    result = CliRunner().invoke(main, ["queue", "pause", "other", "--dsn", app.dsn,
                                       "--schema", app.schema])
    assert result.exit_code == 1
    assert result.output.startswith("Error: unknown queue 'other'")
    result = CliRunner().invoke(main, ["control", "rate_limit", "t.x", "abc", "--dsn",
                                       app.dsn, "--schema", app.schema])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert result.output.startswith("Error: t.x: rate_limit must be a rate above 0")


def test_queue_list_shows_state_depth_running_and_limits(
        app: App, db: psycopg.Connection[Any]) -> None:
    app.send_many("t.x", [[i] for i in range(3)])
    app.send_task("t.x", queue="mail", countdown=3600)
    app.control.queue_limit("mail", 5, "100/m")
    app.control.pause_queue("default")
    result = CliRunner().invoke(main, ["queue", "list", "--json", "--dsn", app.dsn,
                                       "--schema", app.schema])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["default"] == {
        "name": "default", "state": "paused", "queued": 3, "running": 0, "waiting": 0,
        "concurrency": None, "rate_limit": None, "source": "control", "workers": 0}
    assert rows["mail"]["concurrency"] == 5 and rows["mail"]["rate_limit"] == "100/m"
    assert rows["mail"]["waiting"] == 1 and rows["mail"]["state"] == "active"
    table = CliRunner().invoke(main, ["queue", "list", "--dsn", app.dsn, "--schema",
                                      app.schema])
    assert "paused" in table.output and "100/m" in table.output
    result = CliRunner().invoke(main, ["queue", "limit", "mail", "none", "--rate", "none",
                                       "--dsn", app.dsn, "--schema", app.schema])
    assert result.exit_code == 0, result.output
    assert limit_row(db, "queue", "mail")[1:4] == (None, None, None)


def test_code_limits_are_written_and_run_time_ones_win(app: App,
                                                       db: psycopg.Connection[Any]) -> None:
    @app.task(name="t.slow", rate_limit="10/m")
    def slow() -> None:
        pass

    @app.task(name="t.free")
    def free() -> None:
        pass

    app.conf.update(queue_concurrency={"default": 7})
    with running_worker(app):
        pass
    assert limit_row(db, "task", "t.slow") == (False, None, 10.0, 60.0, "code")
    assert limit_row(db, "task", "t.free") is None  # no limit, no row
    assert limit_row(db, "queue", "default") == (False, 7, None, None, "code")
    app.control.rate_limit("t.slow", "5/s")
    slow.rate_limit = "1/h"
    with running_worker(app):
        pass
    assert limit_row(db, "task", "t.slow") == (False, None, 5.0, 1.0, "control")


def test_a_rate_changed_at_run_time_takes_effect_within_a_second(
        app: App, db: psycopg.Connection[Any]) -> None:
    @app.task(name="t.tick")
    def tick(i: int) -> int:
        return i

    with running_worker(app, concurrency=8):
        app.control.rate_limit("t.tick", "2/s")
        wait_until(lambda: limit_row(db, "task", "t.tick") is not None)
        # Every claim after the change obeys it: wait a refresh period of the limits.
        mark = db.execute("SELECT now() + interval '1.1 seconds'").fetchone()[0]
        wait_until(lambda: db.execute("SELECT now() > %s", [mark]).fetchone()[0])
        app.send_many("t.tick", [[i] for i in range(6)])
        wait_until(lambda: db.execute("SELECT count(*) FROM results WHERE task = 't.tick'"
                                      ).fetchone()[0] == 6, timeout=15)
        first, last = db.execute("SELECT min(started_at), max(started_at) FROM results "
                                 "WHERE task = 't.tick'").fetchone()
        # 6 starts at 2/s: 0.5 s apart, less what the pace made up of a late start
        # (under 0.45 s): 2.05 s at least
        assert (last - first).total_seconds() >= 2.0
        app.control.rate_limit("t.tick", None)  # no limit any more
        app.send_many("t.tick", [[i] for i in range(50)])
        wait_until(lambda: started_count(db, "t.tick") == 56, timeout=10)


def test_other_tasks_of_a_queue_run_while_a_limited_one_waits(
        app: App, db: psycopg.Connection[Any]) -> None:
    @app.task(name="t.rare", rate_limit="1/m")
    def rare(i: int) -> int:
        return i

    @app.task(name="t.common")
    def common(i: int) -> int:
        return i

    with running_worker(app, concurrency=4):
        app.send_many("t.rare", [[i] for i in range(5)])
        app.send_many("t.common", [[i] for i in range(20)])
        wait_until(lambda: started_count(db, "t.common") == 20
                   and started_count(db, "t.rare") == 1, timeout=10)
        assert db.execute("SELECT count(*) FROM jobs WHERE task = 't.rare' "
                          "AND state = 'queued'").fetchone()[0] == 4


def test_keyed_jobs_wait_in_order_and_slots_come_back(
        app: App, db: psycopg.Connection[Any]) -> None:
    @app.task(name="t.two", concurrency_limit=2)
    def two(i: int) -> int:
        return i

    results = [app.tasks["t.two"].apply_async((i,), concurrency_key="k") for i in range(6)]
    with running_worker(app, concurrency=8):
        wait_until(lambda: all(r.ready() for r in results), timeout=15)
    order = [row[0] for row in db.execute(
        "SELECT (args->>0)::int FROM results ORDER BY started_at, (args->>0)::int")]
    assert order == list(range(6))
    with pytest.raises(ValueError, match="concurrency_key"):
        app.tasks["t.two"].apply_async((1,), concurrency_key="")


def test_a_paused_queue_starts_nothing_and_running_jobs_finish(
        app: App, db: psycopg.Connection[Any]) -> None:
    @app.task(name="t.n")
    def n(i: int) -> int:
        return i

    app.send_task("t.n", [0])
    app.control.pause_queue("default")
    app.send_task("t.n", [1], queue="other")
    with running_worker(app, queues=["default", "other"]):
        wait_until(lambda: started_count(db, "t.n") == 1)  # the other queue's job ran
        mark = db.execute("SELECT now() + interval '1.1 seconds'").fetchone()[0]
        wait_until(lambda: db.execute("SELECT now() > %s", [mark]).fetchone()[0])
        assert started_count(db, "t.n") == 1
        app.control.resume_queue("default")
        wait_until(lambda: started_count(db, "t.n") == 2, timeout=20)
