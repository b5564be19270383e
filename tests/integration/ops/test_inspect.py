"""`app.control.inspect()` and `pgqueue inspect`, against real workers."""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from pgqueue import App, signals
from tests.conftest import running_worker, wait_until
from tests.integration.ops.helpers import TASKS, pgqueue, tasks


def test_worker_answers_ping_stats_registered_queues_conf_report(app: App) -> None:
    tasks(app)
    with running_worker(app, name="w1@test", queues=["a", "b"], concurrency=3) as worker:
        inspect = app.control.inspect(timeout=10)
        assert inspect.ping() == {"w1@test": {"ok": "pong"}}
        stats = inspect.stats()
        assert stats is not None
        mine = stats["w1@test"]
        assert mine["pool"]["max-concurrency"] == 3 and mine["pool"]["name"] == "threads"
        assert mine["worker_id"] == worker.worker_id and mine["queues"] == ["a", "b"]
        registered = inspect.registered()
        assert registered is not None
        assert {"ops.add", "ops.block"} <= set(registered["w1@test"])
        assert not any(n.startswith("pgqueue.") for n in registered["w1@test"])
        with_limits = inspect.registered("time_limit")
        assert with_limits is not None and "ops.add" in with_limits["w1@test"]
        queues = inspect.active_queues()
        assert queues is not None
        assert [q["name"] for q in queues["w1@test"]] == ["a", "b"]
        conf = inspect.conf(with_defaults=True)
        assert conf is not None and conf["w1@test"]["schema"] == app.schema
        report = inspect.report()
        assert report is not None and "pgqueue:" in report["w1@test"]["ok"]


def test_conf_never_shows_a_password(pg_dsn: str, schema: str) -> None:
    app = App("secret", set_as_current=False)
    app.conf.dsn = make_conninfo(pg_dsn, password="s3cr3t-pw")  # trust auth ignores it
    app.conf.schema = schema
    with running_worker(app, name="w@secret"):
        conf = app.control.inspect(timeout=10).conf()
        report = app.control.inspect(timeout=10).report()
    assert conf is not None and report is not None
    assert "s3cr3t" not in json.dumps(conf) + json.dumps(report)
    assert "***" in conf["w@secret"]["dsn"]


def test_active_query_task_scheduled_reserved_revoked_from_the_tables(app: App) -> None:
    found = tasks(app)
    with running_worker(app, name="w1@test", queues=["default", "later"]) as worker:
        try:
            running = found["block"].delay()
            wait_until(lambda: (app.control.inspect().active() or {}).get("w1@test"), 20,
                       message="job started")
            waiting = found["add"].apply_async((1, 2), queue="later", countdown=600)
            doomed = found["add"].apply_async((3, 4), countdown=600)
            app.control.revoke(doomed.id)
            inspect = app.control.inspect()
            active = inspect.active()
            assert active is not None
            [job] = active["w1@test"]
            assert job["id"] == running.id and job["name"] == "ops.block"
            assert job["hostname"] == "w1@test" and job["acknowledged"] is True
            assert job["args"] == [] and isinstance(job["time_start"], float)
            safe = inspect.active(safe=True)
            assert safe is not None and isinstance(safe["w1@test"][0]["args"], str)
            queried = inspect.query_task(running.id)
            assert queried is not None
            state, request = queried["w1@test"][running.id]
            assert state == "active" and request["id"] == running.id
            scheduled = inspect.scheduled()
            assert scheduled is not None
            assert [e["request"]["id"] for e in scheduled["w1@test"]] == [waiting.id]
            assert scheduled["w1@test"][0]["eta"]
            assert app.control.inspect(timeout=10).reserved() == {"w1@test": []}
            revoked = inspect.revoked()
            assert revoked is not None and doomed.id in revoked["w1@test"]
            assert worker.worker_id
        finally:
            found["gate"].set()


def test_reserved_lists_claimed_jobs_until_they_start(app: App, pg_dsn: str,
                                                     schema: str) -> None:
    """A worker holds claimed jobs unstarted while its claim loop is busy with the batch
    (here a task_received handler that takes its time): reserved lists them, for that
    worker only, and empties as they start."""
    found = tasks(app)
    release = threading.Event()

    def slow_handler(sender: Any = None, request: Any = None, **_: Any) -> None:
        if request is not None and request.hostname == "res@test":
            release.wait(60)

    signals.task_received.connect(slow_handler)
    jobs = [found["block"].delay(30) for _ in range(3)]  # one claim takes all three
    ids = sorted(job.id for job in jobs)
    try:
        with running_worker(app, name="res@test", concurrency=4), \
                running_worker(app, name="idle@test", queues=["elsewhere"]):
            inspect = app.control.inspect(timeout=10)
            held = wait_until(lambda: (inspect.reserved() or {}).get("res@test"), 30,
                              message="jobs reserved")
            assert sorted(job["id"] for job in held) == ids
            assert {job["name"] for job in held} == {"ops.block"}
            assert all(job["time_start"] is None and job["acknowledged"] is False
                       and job["worker_pid"] is None and job["args"] == [30]
                       and job["hostname"] == "res@test" for job in held)
            assert inspect.reserved()["idle@test"] == []  # type: ignore[index]
            safe = inspect.reserved(safe=True)
            assert safe is not None and safe["res@test"][0]["args"] == "[30]"
            cli = pgqueue("inspect", "reserved", "--json", "-t", "10", "-d", "res@test",
                          dsn=pg_dsn, schema=schema)
            assert cli.returncode == 0, cli.stderr
            assert sorted(j["id"] for j in json.loads(cli.stdout)["res@test"]) == ids
            # query_task says what Celery says of a claimed job not started yet
            queried = inspect.query_task(ids[0])
            assert queried is not None and queried["idle@test"] == {}
            state, request = queried["res@test"][ids[0]]
            assert state == "reserved" and request["time_start"] is None
            release.set()
            wait_until(lambda: inspect.reserved() == {"res@test": [], "idle@test": []}, 30,
                       message="reserved empties as the jobs start")
            active = inspect.active()
            assert active is not None and sorted(j["id"] for j in active["res@test"]) == ids
            queried = inspect.query_task(ids)
            assert queried is not None
            assert {i: q[0] for i, q in queried["res@test"].items()} == dict.fromkeys(
                ids, "active")
            found["gate"].set()
            for job in jobs:
                assert job.get(timeout=30) == "done"
    finally:
        release.set()
        found["gate"].set()
        signals.task_received.disconnect(slow_handler)


def test_hostile_reserved_arguments(app: App) -> None:
    tasks(app)
    with running_worker(app, name="w@test"):
        control = app.control
        [bad] = control.broadcast("reserved", arguments={"safe": "yes"}, reply=True,
                                  timeout=10) or [{}]
        assert bad == {"w@test": {"error": "safe must be true, false or null, got 'yes'"}}
        [extra] = control.broadcast("reserved", arguments={"everything": 1}, reply=True,
                                    timeout=10) or [{}]
        assert extra["w@test"]["error"].startswith("reserved: bad arguments ['everything']")
        assert control.inspect(timeout=10).reserved() == {"w@test": []}


def test_destination_targets_one_worker(app: App) -> None:
    tasks(app)
    with running_worker(app, name="one@test"), running_worker(app, name="two@test") as two:
        everyone = app.control.inspect(timeout=10).ping()
        assert everyone == {"one@test": {"ok": "pong"}, "two@test": {"ok": "pong"}}
        assert app.control.inspect(destination=["two@test"], timeout=10).ping() == {
            "two@test": {"ok": "pong"}}
        by_id = app.control.inspect(destination=[two.worker_id], timeout=10).stats()
        assert by_id is not None and list(by_id) == ["two@test"]
        assert app.control.inspect(destination="one@test", timeout=10).active() == {
            "one@test": []}
        assert app.control.inspect(destination=["nobody@test"], timeout=0.5).ping() is None


def test_no_worker_means_none_and_exit_status_69(app: App, pg_dsn: str, schema: str) -> None:
    assert app.control.inspect(timeout=0.2).ping() is None
    assert app.control.inspect().active() is None
    run = pgqueue("inspect", "stats", "--timeout", "0.3", dsn=pg_dsn, schema=schema)
    assert run.returncode == 69, run.stderr
    assert run.stderr.strip() == "Error: No nodes replied within time constraint."
    status = pgqueue("status", dsn=pg_dsn, schema=schema)
    assert status.returncode == 69 and "No nodes replied" in status.stderr


def test_a_worker_that_does_not_answer_is_waited_for_until_the_timeout(
    app: App, db: psycopg.Connection[Any]
) -> None:
    db.execute("INSERT INTO workers (id, hostname, pid, queues, concurrency, pool) "
               "VALUES ('ghost@test:1:abcdef', 'h', 1, '{default}', 1, 'threads')")
    with running_worker(app, name="real@test"):
        import time

        started = time.monotonic()
        # long enough for the live worker to answer on a loaded machine
        answer = app.control.inspect(timeout=4.0).ping()
        assert time.monotonic() - started >= 3.9  # it waited for the ghost
    assert answer == {"real@test": {"ok": "pong"}}


def test_cli_prints_as_celery_and_json(app: App, pg_dsn: str, schema: str) -> None:
    tasks(app)
    with running_worker(app, name="w1@test", concurrency=2):
        ping = pgqueue("inspect", "ping", "-t", "10", dsn=pg_dsn, schema=schema)
        assert ping.returncode == 0, ping.stderr
        assert ping.stdout == "-> w1@test: OK\n        pong\n\n1 node online.\n"
        registered = pgqueue("-A", TASKS, "inspect", "registered", "-t", "10",
                             dsn=pg_dsn, schema=schema)
        assert registered.returncode == 0, registered.stderr
        assert "-> w1@test: OK\n    * ops.add\n" in registered.stdout
        after = pgqueue("inspect", "active", "-A", TASKS, dsn=pg_dsn, schema=schema)
        assert after.stdout == "-> w1@test: OK\n    - empty -\n\n1 node online.\n"
        stats = pgqueue("inspect", "stats", "--json", "-t", "10", dsn=pg_dsn, schema=schema)
        assert stats.returncode == 0, stats.stderr
        answer = json.loads(stats.stdout)["w1@test"]
        assert answer["pool"]["max_concurrency"] == 2  # snake_case in JSON
        assert isinstance(answer["uptime"], int)
        targeted = pgqueue("inspect", "-d", "nobody@x", "ping", dsn=pg_dsn, schema=schema)
        assert targeted.returncode == 69
        status = pgqueue("status", "-t", "10", dsn=pg_dsn, schema=schema)
        assert status.stdout == "-> w1@test: OK\n\n1 node online.\n", status.stdout
        old = pgqueue("inspect", "workers", "--json", dsn=pg_dsn, schema=schema)
        assert [w["concurrency"] for w in json.loads(old.stdout)] == [2]


def test_hostile_inspect_input(app: App, pg_dsn: str, schema: str) -> None:
    unknown = pgqueue("inspect", "everything", dsn=pg_dsn, schema=schema)
    assert unknown.returncode == 2 and "No such command" in unknown.stderr
    bad_id = pgqueue("inspect", "query_task", "", dsn=pg_dsn, schema=schema)
    assert bad_id.returncode == 1
    assert bad_id.stderr.startswith("Error: query_task id must be a string of 1 to"), \
        bad_id.stderr
    bad_timeout = pgqueue("inspect", "ping", "-t", "-1", dsn=pg_dsn, schema=schema)
    assert bad_timeout.returncode == 2
    import pytest

    with pytest.raises(ValueError, match="destination"):
        app.control.inspect(destination=[""])
    with pytest.raises(TypeError):
        app.control.inspect(connection=object())


def test_processes_pool_answers_with_its_children(app: App) -> None:
    found = tasks(app)
    with running_worker(app, name="p@test", pool="processes", concurrency=2) as worker:
        wait_until(lambda: len(worker.pool.child_pids()) == 2, 30, message="2 children")
        stats = app.control.inspect(timeout=10).stats()
        assert stats is not None
        pool = stats["p@test"]["pool"]
        assert pool["name"] == "processes" and pool["max-concurrency"] == 2
        assert sorted(pool["processes"]) == worker.pool.child_pids()
        try:
            running = found["block"].delay(20)
            active = wait_until(lambda: (app.control.inspect().active() or {}).get("p@test"),
                                30, message="job active")
            assert [job["id"] for job in active] == [running.id]
        finally:
            app.control.revoke(running.id, terminate=True)
