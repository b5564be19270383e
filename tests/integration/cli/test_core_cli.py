"""The `pgqueue` command, run for real: clear one-line errors, and the small commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import App
from tests.conftest import running_worker

PGQUEUE = str(Path(sys.executable).with_name("pgqueue"))
ROOT = Path(__file__).resolve().parents[3]
TASKS = "tests.acceptance.apps.core_app"
DOWN = "postgresql://postgres@127.0.0.1:1/postgres"  # nothing listens on port 1


def pgqueue(*args: str, dsn: str | None = None, schema: str | None = None,
            input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PGQUEUE_DSN", "DATABASE_URL", "PGQUEUE_SCHEMA")}
    if dsn:
        env["PGQUEUE_DSN"] = dsn
    if schema:
        env["PGQUEUE_SCHEMA"] = schema
    return subprocess.run([PGQUEUE, *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          input=input, timeout=timeout)


def assert_one_line_error(run: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0]


# -- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    ["migrate"], ["inspect"], ["purge", "-f"], ["call", "x.y"],
    ["result", "01900000-0000-7000-8000-000000000000"], ["worker", "-A", TASKS],
])
def test_bad_dsn(command: list[str]) -> None:
    run = pgqueue(*command, "--dsn", "not-a-dsn")
    assert_one_line_error(run, "'not-a-dsn' is not a PostgreSQL connection string")


def test_other_broker_url() -> None:
    run = pgqueue("worker", "-A", TASKS, "--dsn", "redis://localhost:6379/0")
    assert_one_line_error(run, "redis:// URLs are not supported", "PostgreSQL")


@pytest.mark.parametrize("command", [
    ["migrate"], ["inspect"], ["purge", "-f"], ["call", "x.y"],
    ["result", "01900000-0000-7000-8000-000000000000"], ["worker", "-A", TASKS],
])
def test_database_down(command: list[str]) -> None:
    run = pgqueue(*command, "--dsn", DOWN)
    assert_one_line_error(run, "cannot connect to PostgreSQL at postgres@127.0.0.1:1/postgres")
    assert "Connection refused" in run.stderr  # the cause, not only libpq's hint


@pytest.mark.parametrize("command", [
    ["inspect"], ["inspect", "workers"], ["purge", "-f"], ["call", "x.y"],
    ["result", "01900000-0000-7000-8000-000000000000"], ["worker", "-A", TASKS],
])
def test_missing_schema(pg_dsn: str, command: list[str]) -> None:
    missing = f"missing_{uuid.uuid4().hex[:8]}"
    run = pgqueue(*command, dsn=pg_dsn, schema=missing)
    assert_one_line_error(run, "run `pgqueue migrate`", missing)


@pytest.mark.parametrize(("app_path", "fragment"), [
    ("no_such_module.tasks", "cannot import 'no_such_module.tasks'"),
    (f"{TASKS}:nothing_here", "has no attribute 'nothing_here'"),
    ("json", "no pgqueue App found"),
])
def test_bad_app_path(pg_dsn: str, schema: str, app_path: str, fragment: str) -> None:
    run = pgqueue("worker", "-A", app_path, dsn=pg_dsn, schema=schema)
    assert_one_line_error(run, fragment)


def test_worker_without_app() -> None:
    assert_one_line_error(pgqueue("worker"), "needs -A/--app")


def test_debug_level_shows_the_traceback(pg_dsn: str, schema: str) -> None:
    run = pgqueue("worker", "-A", "no_such_module", "-l", "DEBUG", dsn=pg_dsn, schema=schema)
    assert run.returncode != 0
    assert "Traceback" in run.stderr
    assert "Error: cannot import 'no_such_module'" in run.stderr


def test_call_with_bad_json() -> None:
    run = pgqueue("call", "x.y", "--args", "[1,", "--dsn", DOWN)
    assert_one_line_error(run, "--args/--kwargs must be JSON")


# -- the small commands -------------------------------------------------------------------

def test_call_then_result(app: App, pg_dsn: str, schema: str,
                          db: psycopg.Connection[Any]) -> None:
    @app.task(name="core.add")
    def add(x: int, y: int) -> int:
        return x + y

    called = pgqueue("call", "core.add", "-a", "[1, 2]", "-Q", "default", "--priority", "7",
                     "-A", TASKS, dsn=pg_dsn, schema=schema)
    assert called.returncode == 0, called.stderr
    job_id = called.stdout.strip()
    assert db.execute("SELECT task, args, priority FROM jobs WHERE id = %s",
                      [job_id]).fetchone() == ("core.add", [1, 2], 7)
    pending = pgqueue("result", job_id, dsn=pg_dsn, schema=schema)
    assert pending.returncode == 0 and pending.stdout.split() == [job_id, "PENDING"]
    with running_worker(app):
        done = pgqueue("result", job_id, "--wait", "10", dsn=pg_dsn, schema=schema)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{job_id}  SUCCESS", "3"]


def test_call_by_name_without_the_app(pg_dsn: str, schema: str,
                                      db: psycopg.Connection[Any]) -> None:
    called = pgqueue("call", "remote.task", "-k", '{"a": 1}', "--countdown", "60",
                     dsn=pg_dsn, schema=schema)
    assert called.returncode == 0, called.stderr
    assert db.execute("SELECT task, kwargs, state FROM jobs WHERE id = %s",
                      [called.stdout.strip()]).fetchone() == ("remote.task", {"a": 1},
                                                              "scheduled")


def test_call_of_a_task_the_app_does_not_have(pg_dsn: str, schema: str) -> None:
    run = pgqueue("call", "core.ad", "-A", TASKS, dsn=pg_dsn, schema=schema)
    assert_one_line_error(run, "no task named 'core.ad'", "core.add")


def test_result_of_a_failure_with_traceback(app: App, pg_dsn: str, schema: str) -> None:
    @app.task(name="core.fail")
    def fail(message: str) -> None:
        raise ValueError(message)

    with running_worker(app):
        job = fail.delay("it broke")
        job.get(timeout=10, propagate=False)
    shown = pgqueue("result", job.id, "--traceback", dsn=pg_dsn, schema=schema)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[:2] == [f"{job.id}  FAILURE", "ValueError: it broke"]
    assert "Traceback (most recent call last)" in shown.stdout


def test_inspect_queues_active_and_workers(app: App, pg_dsn: str, schema: str) -> None:
    app.send_many("core.add", [(1, 2)] * 3, queue="q1")
    app.send_task("core.add", (1, 2), queue="q2", countdown=60)
    queues = pgqueue("inspect", "queues", "--json", dsn=pg_dsn, schema=schema)
    assert queues.returncode == 0, queues.stderr
    found = {(r["queue"], r["state"], r["jobs"]) for r in json.loads(queues.stdout)}
    assert found == {("q1", "queued", 3), ("q2", "scheduled", 1)}
    table = pgqueue("inspect", dsn=pg_dsn, schema=schema)
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split() == ["queue", "state", "jobs", "oldest_run_at"]

    with running_worker(app, queues=["nothing-here"], name="w@core") as worker:
        workers = pgqueue("inspect", "workers", "--json", dsn=pg_dsn, schema=schema)
        assert workers.returncode == 0, workers.stderr
        assert [w["id"] for w in json.loads(workers.stdout)] == [worker.worker_id]
        active = pgqueue("inspect", "active", dsn=pg_dsn, schema=schema)
        assert active.returncode == 0 and "-> w@core: OK\n    - empty -" in active.stdout
    active = pgqueue("inspect", "active", dsn=pg_dsn, schema=schema)
    assert active.returncode == 69 and "No nodes replied" in active.stderr


def test_purge(app: App, pg_dsn: str, schema: str, db: psycopg.Connection[Any]) -> None:
    app.send_many("core.add", [(1, 2)] * 3, queue="a")
    app.send_many("core.add", [(1, 2)] * 2, queue="b", countdown=60)
    refused = pgqueue("purge", "-Q", "a", dsn=pg_dsn, schema=schema, input="n\n")
    assert refused.returncode != 0
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (5,)
    purged = pgqueue("purge", "-f", "-Q", "a", dsn=pg_dsn, schema=schema)
    assert purged.returncode == 0, purged.stderr
    assert "purged 3 jobs" in purged.stdout
    assert db.execute("SELECT queue, count(*) FROM jobs GROUP BY queue").fetchall() == [
        ("b", 2)]
    everything = pgqueue("purge", "-f", dsn=pg_dsn, schema=schema)
    assert "purged 2 jobs" in everything.stdout
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def test_version_and_help() -> None:
    version = pgqueue("--version")
    assert version.returncode == 0 and "pgqueue" in version.stdout
    helped = pgqueue("worker", "--help")
    assert helped.returncode == 0
    for option in ("-A", "-c", "-P", "-Q", "-n", "-l", "--dsn", "--schema"):
        assert option in helped.stdout
