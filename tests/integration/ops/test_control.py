"""`app.control.*` and `pgqueue control`: each command takes effect in real workers."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from pgqueue import App
from pgqueue.exceptions import TimeLimitExceeded
from tests.conftest import running_worker, wait_until
from tests.integration.ops.helpers import pgqueue, replies, tasks


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_pool_grow_and_shrink_change_the_pool(app: App, pool: str,
                                              db: psycopg.Connection[Any]) -> None:
    tasks(app)
    with running_worker(app, name="w@test", pool=pool, concurrency=2) as worker:
        answer = replies(app.control.pool_grow(3, reply=True, timeout=10))
        assert answer == {"w@test": {"ok": "pool will grow (now 5 slots)"}}
        assert worker.pool.size == 5
        wait_until(lambda: len(worker.pool._executors) == 5, 20, message="5 executors")
        if pool == "processes":
            wait_until(lambda: len(worker.pool.child_pids()) == 5, 20, message="5 children")
        assert db.execute("SELECT concurrency FROM workers").fetchone() == (5,)
        answer = replies(app.control.pool_shrink(4, reply=True, timeout=10))
        assert answer["w@test"]["ok"].startswith("pool will shrink")
        wait_until(lambda: len(worker.pool._executors) == 1, 20, message="1 executor")
        if pool == "processes":
            wait_until(lambda: len(worker.pool.child_pids()) == 1, 20, message="1 child")
        result = app.send_task("ops.add", (2, 3))
        assert result.get(timeout=30) == 5  # the pool left works
        refused = replies(app.control.pool_shrink(1, reply=True, timeout=10))
        assert refused == {"w@test": {"error": "pool_shrink 1: the pool has 1 slots and "
                                               "keeps at least 1"}}
        assert worker.pool.size == 1


def test_a_shrunk_pool_runs_no_more_jobs_at_once_than_its_size(app: App) -> None:
    found = tasks(app)
    with running_worker(app, name="w@test", concurrency=4) as worker:
        app.control.pool_shrink(3, reply=True, timeout=10)
        results = [found["block"].delay(20) for _ in range(3)]
        wait_until(lambda: len((app.control.inspect().active() or {}).get("w@test", [])) == 1,
                   20, message="one job running")
        assert worker.pool.free_slots() == 0
        found["gate"].set()
        for result in results:
            assert result.get(timeout=30) == "done"


def test_solo_cannot_grow_and_says_so(app: App) -> None:
    tasks(app)
    with running_worker(app, name="solo@test", pool="solo"):
        answer = replies(app.control.pool_grow(1, reply=True, timeout=10))
        assert "cannot grow or shrink" in answer["solo@test"]["error"]


def test_add_and_cancel_consumer_change_the_queues_claimed(app: App) -> None:
    found = tasks(app)
    with running_worker(app, name="w@test", queues=["default"]) as worker:
        waiting = found["add"].apply_async((1, 1), queue="extra")
        answer = replies(app.control.add_consumer("extra", reply=True, timeout=10))
        assert answer == {"w@test": {"ok": "add consumer extra"}}
        assert waiting.get(timeout=30) == 2
        again = replies(app.control.add_consumer("extra", reply=True, timeout=10))
        assert again["w@test"]["ok"] == "already consuming from 'extra'"
        queues = app.control.inspect(timeout=10).active_queues()
        assert queues is not None
        assert [q["name"] for q in queues["w@test"]] == ["default", "extra"]
        answer = replies(app.control.cancel_consumer("default", reply=True, timeout=10))
        assert answer == {"w@test": {"ok": "no longer consuming from 'default'"}}
        left = found["add"].apply_async((1, 2), queue="default")
        claimed = found["add"].apply_async((1, 3), queue="extra")
        assert claimed.get(timeout=30) == 4
        assert left.state == "PENDING"
        last = replies(app.control.cancel_consumer("extra", reply=True, timeout=10))
        assert "only queue" in last["w@test"]["error"]
        assert worker.queues == ["extra"]


def test_time_limit_changes_the_limit_in_threads_and_processes(app: App) -> None:
    tasks(app)
    for pool in ("threads", "processes"):
        with running_worker(app, name=f"{pool}@test", pool=pool, concurrency=1):
            answer = replies(app.control.time_limit("ops.sleep", soft=None, hard=1.0,
                                                    reply=True, timeout=10))
            assert answer == {f"{pool}@test": {"ok": "time limits set successfully"}}
            result = app.send_task("ops.sleep", (30,))
            with pytest.raises(TimeLimitExceeded):
                result.get(timeout=60)
        app.tasks["ops.sleep"].time_limit = None


def test_soft_time_limit_reaches_the_processes_children(app: App) -> None:
    @app.task(name="ops.soft")
    def soft() -> str:
        import time

        from pgqueue.exceptions import SoftTimeLimitExceeded

        try:
            time.sleep(30)
        except SoftTimeLimitExceeded:
            return "soft limit seen"
        return "slept"

    with running_worker(app, name="p@test", pool="processes", concurrency=1):
        app.control.time_limit("ops.soft", soft=0.5, reply=True, timeout=10)
        assert app.send_task("ops.soft").get(timeout=60) == "soft limit seen"


def test_shutdown_is_a_warm_shutdown(app: App) -> None:
    found = tasks(app)
    with running_worker(app, name="w@test") as worker:
        running = found["block"].delay(5)
        wait_until(lambda: (app.control.inspect().active() or {}).get("w@test"), 20,
                   message="job running")
        answer = replies(app.control.shutdown(reply=True, timeout=10))
        assert answer == {"w@test": {"ok": "shutting down"}}
        found["gate"].set()
        assert worker.stopped.wait(30)
        assert running.get(timeout=10) == "done"  # the running job finished first


def test_pool_restart_replaces_the_children(app: App) -> None:
    tasks(app)
    with running_worker(app, name="t@test"):
        refused = replies(app.control.pool_restart(reply=True, timeout=10))
        assert "not enabled" in refused["t@test"]["error"]
        app.conf.worker_pool_restarts = True
        refused = replies(app.control.pool_restart(reply=True, timeout=10))
        assert "needs -P processes" in refused["t@test"]["error"]
    with running_worker(app, name="p@test", pool="processes", concurrency=2) as worker:
        wait_until(lambda: len(worker.pool.child_pids()) == 2, 20, message="2 children")
        before = set(worker.pool.child_pids())
        answer = replies(app.control.pool_restart(modules=["json"], reload=True, reply=True,
                                                  timeout=10, destination="p@test"))
        assert answer == {"p@test": {"ok": "reload started"}}
        wait_until(lambda: len(worker.pool.child_pids()) == 2
                   and not before & set(worker.pool.child_pids()), 30,
                   message="new children")
        assert app.send_task("ops.add", (1, 2)).get(timeout=30) == 3
        bad = replies(app.control.pool_restart(modules=["no_such_module_x"], reply=True,
                                               timeout=10))
        assert "cannot import no_such_module_x" in bad["p@test"]["error"]


def test_autoscale_grows_with_the_backlog_and_shrinks_after_it(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = tasks(app)
    monkeypatch.setenv("AUTOSCALE_KEEPALIVE", "0.5")
    with running_worker(app, name="a@test", autoscale=(4, 1)) as worker:
        assert worker.pool.size == 1
        results = [found["block"].delay(30) for _ in range(6)]
        wait_until(lambda: worker.pool.size == 4, 30, message="grown to 4")
        found["gate"].set()
        for result in results:
            assert result.get(timeout=30) == "done"
        wait_until(lambda: worker.pool.size == 1, 30, message="shrunk to 1")
        answer = replies(app.control.autoscale(6, 2, reply=True, timeout=10))
        assert answer == {"a@test": {"ok": "autoscale now max=6 min=2"}}
        assert worker.pool.size == 2
        assert worker.autoscaler is not None and worker.autoscaler.max == 6
    with running_worker(app, name="n@test"):
        answer = replies(app.control.autoscale(3, 1, reply=True, timeout=10))
        assert "not enabled" in answer["n@test"]["error"]


def test_enable_and_disable_events(app: App) -> None:
    tasks(app)
    with running_worker(app, name="w@test") as worker:
        assert not worker.events.enabled
        on = replies(app.control.enable_events(reply=True, timeout=10))
        assert on == {"w@test": {"ok": "task events enabled"}}
        assert worker.events.wanted
        off = replies(app.control.disable_events(reply=True, timeout=10))
        assert off == {"w@test": {"ok": "task events disabled"}}
        assert not worker.events.wanted


def test_destination_and_no_reply(app: App) -> None:
    tasks(app)
    with running_worker(app, name="one@test") as one, \
            running_worker(app, name="two@test") as two:
        before = (one.pool.size, two.pool.size)
        answer = replies(app.control.pool_grow(1, destination=["two@test"], reply=True,
                                               timeout=10))
        assert list(answer) == ["two@test"]
        assert (one.pool.size, two.pool.size) == (before[0], before[1] + 1)
        assert app.control.pool_grow(1, destination="one@test") is None  # reply=False
        wait_until(lambda: one.pool.size == two.pool.size, 20, message="one grown too")


def test_cli_control_commands(app: App, pg_dsn: str, schema: str) -> None:
    found = tasks(app)
    with running_worker(app, name="w@test", concurrency=2) as worker:
        grow = pgqueue("control", "pool_grow", "2", "-t", "10", dsn=pg_dsn, schema=schema)
        assert grow.returncode == 0, grow.stderr
        assert grow.stdout == "-> w@test: OK\n        pool will grow (now 4 slots)\n"
        assert worker.pool.size == 4
        shrink = pgqueue("control", "pool-shrink", "9", "-t", "10", dsn=pg_dsn, schema=schema)
        assert shrink.returncode == 1
        assert shrink.stdout.startswith("-> w@test: ERROR\n")
        limit = pgqueue("control", "time_limit", "ops.nothing", "1", "2", "-t", "10",
                        dsn=pg_dsn, schema=schema)
        assert limit.returncode == 1 and "unknown task 'ops.nothing'" in limit.stdout
        as_json = pgqueue("control", "add_consumer", "more", "--json", "-t", "10",
                          dsn=pg_dsn, schema=schema)
        assert json.loads(as_json.stdout) == {"w@test": {"ok": "add consumer more"}}
        doomed = found["add"].apply_async((1, 1), countdown=600)
        revoke = pgqueue("control", "revoke", doomed.id, dsn=pg_dsn, schema=schema)
        assert revoke.returncode == 0 and f"revoked before start: {doomed.id}" in revoke.stdout
        assert doomed.state == "REVOKED"
        nobody = pgqueue("control", "-d", "nobody@x", "enable_events",
                         dsn=pg_dsn, schema=schema)
        assert nobody.returncode == 69 and "No nodes replied" in nobody.stderr


@pytest.mark.parametrize("args, code, message", [
    (["frobnicate"], 2, "No such command"),
    (["pool_grow", "many"], 2, "not a valid integer"),
    (["pool_grow", "0"], 1, "Error: n must be a whole number of at least 1"),
    (["pool_shrink", "-3"], 2, ""),
    (["autoscale", "2", "5"], 1, "Error: autoscale: min (5) must not be above max (2)"),
    (["time_limit", "t", "0"], 1, "Error: soft must be a number of seconds above 0"),
    (["time_limit", "t", "nan"], 1, "Error: soft must be a number of seconds above 0"),
    (["add_consumer", ""], 1, "Error:"),
    (["revoke", ""], 1, "Error: revoke id must be a string of 1 to"),
])
def test_cli_hostile_input(args: list[str], code: int, message: str, pg_dsn: str,
                           schema: str) -> None:
    run = pgqueue("control", *args, dsn=pg_dsn, schema=schema)
    assert run.returncode == code, (run.stdout, run.stderr)
    assert message in run.stderr
    assert "Traceback" not in run.stderr


def test_python_hostile_input(app: App) -> None:
    with pytest.raises(ValueError, match="unknown control command 'pool_grwo'.*pool_grow"):
        app.control.broadcast("pool_grwo")
    with pytest.raises(ValueError, match="n must be"):
        app.control.pool_grow(True)
    with pytest.raises(TypeError, match="connection"):
        app.control.ping(connection=object())
    with pytest.raises(ValueError, match="add_consumer: exchange"):
        app.control.add_consumer("q", exchange="x")


@pytest.mark.parametrize("action, arguments, error", [
    ("pool_grow", '"garbage"', "pool_grow: arguments must be a JSON object"),
    ("pool_grow", '{"n": "lots"}', "n must be a whole number of at least 1, got 'lots'"),
    ("pool_grow", '{"n": 1, "colour": "red"}', "pool_grow: bad arguments"),
    ("time_limit", '{"task_name": ["x"]}', "time_limit: unknown task"),
    ("time_limit", '{"task_name": "ops.add", "hard": -5}', "hard must be a number"),
    ("cancel_consumer", '{"queue": 7}', "not consuming from 7"),
    ("add_consumer", '{"queue": ""}', "queue"),
    ("autoscale", '{"max": 1e400}', "bad arguments"),
    ("frobnicate", '{}', "unknown command 'frobnicate'"),
])
def test_a_request_row_written_by_plain_sql_cannot_break_the_worker(
    app: App, db: psycopg.Connection[Any], action: str, arguments: str, error: str
) -> None:
    tasks(app)
    with running_worker(app, name="w@test") as worker:
        size = worker.pool.size
        # `reply` so that the worker answers; the garbage is in the other arguments
        patched = arguments if not arguments.startswith("{") else \
            arguments[:-1] + (', "reply": true}' if arguments != "{}" else '"reply": true}')
        request_id = db.execute(
            "INSERT INTO control_requests (action, arguments) VALUES (%s, %s::jsonb) "
            "RETURNING id", [action, patched]).fetchone()[0]
        db.execute("SELECT pg_notify(%s, '')", [app.queries.control_channel])
        if arguments.startswith("{"):
            reply = wait_until(lambda: db.execute(
                "SELECT reply FROM control_replies WHERE request_id = %s",
                [request_id]).fetchone(), 20, message="a reply")
            assert error in reply[0]["error"], reply
        assert worker.pool.size == size
        assert replies(app.control.ping(timeout=10)) == {"w@test": {"ok": "pong"}}
        assert app.send_task("ops.add", (1, 2)).get(timeout=30) == 3


@pytest.mark.parametrize("value, message", [
    ("abc", "--autoscale takes MAX,MIN"),
    ("2,5", "MIN at most MAX"),
    ("0", "MAX must be at least 1"),
])
def test_worker_autoscale_option_refuses_bad_bounds(value: str, message: str, pg_dsn: str,
                                                    schema: str) -> None:
    run = pgqueue("worker", "-A", "tests.acceptance.apps.core_app", f"--autoscale={value}",
                  dsn=pg_dsn, schema=schema)
    assert run.returncode == 1 and message in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_autoscale_refuses_the_solo_pool(app: App) -> None:
    from pgqueue.exceptions import ConfigurationError
    from pgqueue.worker.worker import Worker

    with pytest.raises(ConfigurationError, match="autoscale needs a pool that can grow"):
        Worker(app, pool="solo", autoscale=(4, 1))
