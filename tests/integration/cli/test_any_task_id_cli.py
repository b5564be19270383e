"""`pgqueue result` and `pgqueue call --task-id` with any string, and a real
`pgqueue worker` process running a job sent under a string id."""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg
import pytest

from pgqueue import App, limits
from tests.acceptance.procs import HERE, WorkerProcess, workers
from tests.conftest import running_worker
from tests.integration.cli.test_core_cli import TASKS, assert_one_line_error, pgqueue


@pytest.mark.parametrize("task_id", ["not-a-uuid", "order-42", "ünïcødé", " ",
                                     "0190f5c2-52a1-7d6e-8b1f-3c2d4e5f6a7b", "x" * 500,
                                     "01900000-0000-7000-8000-00000000000G"])
def test_result_of_an_unknown_id_is_pending(pg_dsn: str, schema: str, task_id: str) -> None:
    run = pgqueue("result", task_id, dsn=pg_dsn, schema=schema)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{task_id}  PENDING\n" and run.stderr == ""
    as_json = pgqueue("result", task_id, "--json", dsn=pg_dsn, schema=schema)
    assert json.loads(as_json.stdout) == {"id": task_id, "state": "PENDING", "result": None,
                                          "error": None, "traceback": None}


@pytest.mark.parametrize("task_id", ["", "x" * 501])
def test_result_of_an_id_no_job_can_have_is_one_error_line(
    pg_dsn: str, schema: str, task_id: str
) -> None:
    run = pgqueue("result", task_id, dsn=pg_dsn, schema=schema)
    assert_one_line_error(run, "task id must be a string of 1 to 500 characters")


def test_call_with_a_bad_task_id_is_one_error_line(pg_dsn: str, schema: str) -> None:
    run = pgqueue("call", "core.add", "--task-id", "", dsn=pg_dsn, schema=schema)
    assert_one_line_error(run, "task_id must be a string of 1 to 500 characters")


def test_call_twice_with_the_same_task_id_is_one_error_line(pg_dsn: str, schema: str) -> None:
    first = pgqueue("call", "core.add", "-a", "[1, 2]", "--task-id", "order-42",
                    "--countdown", "3600", dsn=pg_dsn, schema=schema)
    assert (first.returncode, first.stdout) == (0, "order-42\n"), first.stderr
    again = pgqueue("call", "core.add", "-a", "[1, 2]", "--task-id", "order-42",
                    dsn=pg_dsn, schema=schema)
    assert_one_line_error(again, "already exists", "order-42")


def test_a_real_worker_runs_a_job_sent_under_a_string_id(
    app: App, pg_dsn: str, schema: str, db: psycopg.Connection[Any]
) -> None:
    sent = pgqueue("call", "core.add", "-A", TASKS, "-a", "[20, 22]", "--task-id", "order-42",
                   dsn=pg_dsn, schema=schema)
    assert sent.stdout == "order-42\n", sent.stderr
    with workers() as started:
        worker = WorkerProcess(pg_dsn, schema, TASKS, "-P", "threads", "-c", "2",
                               apps_dir=HERE.parent.parent)
        started.append(worker)
        worker.wait_ready(60)
        run = pgqueue("result", "order-42", "--wait", "60", dsn=pg_dsn, schema=schema,
                      timeout=90)
    assert run.stdout == "order-42  SUCCESS\n42\n", run.stderr + worker.output()
    row = db.execute("SELECT id::text, task_id, state FROM results").fetchone()
    assert row == (limits.row_id("order-42"), "order-42", "SUCCESS")
    assert app.AsyncResult("order-42").result == 42


def test_inspect_active_shows_the_id_as_given(app: App, pg_dsn: str, schema: str) -> None:
    started, release = threading.Event(), threading.Event()

    @app.task(name="t.block")
    def block() -> None:
        started.set()
        release.wait(30)

    try:
        with running_worker(app, name="w@test"):
            block.apply_async(task_id="running-one")
            assert started.wait(30)
            run = pgqueue("inspect", "active", "--json", dsn=pg_dsn, schema=schema)
            release.set()
    finally:
        release.set()
    assert run.returncode == 0, run.stderr
    assert [job["id"] for job in json.loads(run.stdout)["w@test"]] == ["running-one"]
