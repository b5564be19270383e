"""Retry by hand (issue 16, point 5): a failed or revoked job sent again under its id, by
id or filter, from Python and the CLI, with the old outcome kept in its history."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import App, AsyncResult
from pgqueue.utils import uuid
from tests.conftest import running_worker

PGQUEUE = str(Path(sys.executable).with_name("pgqueue"))


@pytest.fixture
def flaky(app: App, tmp_path: Path) -> Any:
    """Fails until the file ``fixed`` exists."""
    fixed = tmp_path / "fixed"

    @app.task(name="t.flaky", max_retries=0)
    def flaky(x: int) -> int:
        if not fixed.exists():
            raise ValueError(f"broken {x}")
        return x * 10

    flaky.fixed = fixed
    return flaky


def fail(app: App, task: Any, *args: Any) -> AsyncResult:
    result: AsyncResult = task.delay(*args)
    with running_worker(app), pytest.raises(ValueError):
        result.get(timeout=20)
    return result


def test_retry_by_id_runs_the_job_again_under_its_id_and_keeps_its_history(
        app: App, flaky: Any, db: psycopg.Connection[Any]) -> None:
    result = fail(app, flaky, 4)
    assert result.state == "FAILURE"
    flaky.fixed.touch()
    again = result.retry()
    assert again is result
    assert result.state == "PENDING"  # a fresh read: the new run, not the cached failure
    assert db.execute("SELECT state, attempt FROM jobs WHERE id = %s",
                      [result.id]).fetchone() == ("queued", 0)
    assert db.execute("SELECT count(*) FROM results WHERE id = %s",
                      [result.id]).fetchone() == (0,)
    with running_worker(app):
        assert result.get(timeout=20) == 40
    other = app.AsyncResult(result.id)  # any handle on the id reads the new outcome
    assert other.state == "SUCCESS" and other.result == 40
    history = result.history()
    assert len(history) == 1
    assert history[0]["state"] == "FAILURE" and history[0]["attempt"] == 1
    assert history[0]["error"] == "ValueError: broken 4"
    assert "ValueError" in history[0]["traceback"]
    # plain SQL reads it too
    assert db.execute("SELECT state, error FROM job_history WHERE job_id = %s",
                      [result.id]).fetchall() == [("FAILURE", "ValueError: broken 4")]


def test_a_job_sent_under_a_string_id_is_retried_under_it(
        app: App, flaky: Any, db: psycopg.Connection[Any]) -> None:
    result = flaky.apply_async((5,), task_id="refresh-42")
    with running_worker(app), pytest.raises(ValueError):
        result.get(timeout=20)
    flaky.fixed.touch()
    assert [r.id for r in app.retry(["refresh-42"])] == ["refresh-42"]
    assert db.execute("SELECT task_id FROM jobs").fetchall() == [("refresh-42",)]
    with running_worker(app):
        assert app.AsyncResult("refresh-42").get(timeout=20) == 50
    assert [h["state"] for h in app.AsyncResult("refresh-42").history()] == ["FAILURE"]


def test_the_new_run_gets_fresh_attempts(app: App, db: psycopg.Connection[Any]) -> None:
    @app.task(bind=True, name="t.twice", max_retries=1)
    def twice(self: Any) -> int:
        raise self.retry(exc=KeyError("no"), countdown=0)

    result = twice.delay()
    with running_worker(app):
        with pytest.raises(KeyError):
            result.get(timeout=20)
        assert db.execute("SELECT attempt FROM results WHERE id = %s",
                          [result.id]).fetchone() == (2,)
        result.retry()
        with pytest.raises(KeyError):
            result.get(timeout=20)
    assert db.execute("SELECT attempt FROM results WHERE id = %s",
                      [result.id]).fetchone() == (2,)  # two more attempts, not zero
    assert [h["attempt"] for h in result.history()] == [2]


def test_retry_of_a_revoked_job(app: App, flaky: Any) -> None:
    flaky.fixed.touch()
    result = flaky.apply_async((2,), countdown=3600)
    result.revoke()
    assert result.state == "REVOKED"
    result.retry()
    with running_worker(app):
        assert result.get(timeout=20) == 20  # the countdown is not kept: it runs now
    assert result.history()[0]["state"] == "REVOKED"


def test_retry_by_filter(app: App, flaky: Any, db: psycopg.Connection[Any]) -> None:
    @app.task(name="t.other")
    def other() -> None:
        raise ValueError("other")

    failed = [flaky.delay(i) for i in range(3)]
    elsewhere = other.delay()
    revoked = flaky.apply_async((9,), countdown=3600)
    revoked.revoke()
    with running_worker(app):
        for result in [*failed, elsewhere]:
            with pytest.raises(ValueError):
                result.get(timeout=20)
    assert app.retry(task="t.flaky", since=datetime.now(timezone.utc) + timedelta(hours=1)) \
        == []
    flaky.fixed.touch()
    retried = app.retry(task="t.flaky", since=timedelta(hours=1))
    assert sorted(r.id for r in retried) == sorted(r.id for r in failed)  # not the revoked
    assert app.retry(task="t.flaky", since=3600) == []  # nothing left that failed
    assert [r.id for r in app.retry(task="t.flaky", state="REVOKED")] == [revoked.id]
    with running_worker(app):
        assert sorted(r.get(timeout=20) for r in retried) == [0, 10, 20]
        assert revoked.get(timeout=20) == 90
    assert elsewhere.state == "FAILURE"
    assert len(app.retry(since=3600, limit=1)) == 1  # t.other, any task


@pytest.mark.parametrize("call, message", [
    (lambda app: app.retry(), "give job ids, or task= and/or since="),
    (lambda app: app.retry(task="t.flaky", state="SUCCESS"), "send a new one"),
    (lambda app: app.retry(task="t.flaky", state="STARTED"), "cannot be retried"),
    (lambda app: app.retry(task="t.flaky", state=[]), "state must be"),
    (lambda app: app.retry(task="t.flaky", since=-5), "since must be"),
    (lambda app: app.retry(task="t.flaky", since=float("nan")), "since must be"),
    (lambda app: app.retry(task="t.flaky", since="yesterday"), "since must be"),
    (lambda app: app.retry(task="t.flaky", limit=0), "limit must be"),
    (lambda app: app.retry(task="t.flaky", limit=True), "limit must be"),
    (lambda app: app.retry(task="", since=1), "retry: task must be"),
    (lambda app: app.retry(["not-a-job"]), "there is no job not-a-job"),
    (lambda app: app.retry([""]), "must be a string of 1 to"),
    (lambda app: app.retry([uuid()]), "there is no job"),
])
def test_bad_input_is_one_clear_error(app: App, flaky: Any, call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(app)


def test_a_live_or_successful_job_cannot_be_retried(app: App, flaky: Any,
                                                    db: psycopg.Connection[Any]) -> None:
    waiting = flaky.apply_async((1,), countdown=3600)
    with pytest.raises(ValueError, match="is not finished \\(it is scheduled\\)"):
        waiting.retry()
    flaky.fixed.touch()
    done = flaky.delay(2)
    with running_worker(app):
        assert done.get(timeout=20) == 20
    with pytest.raises(ValueError, match="ended SUCCESS.*send a new job"):
        done.retry()


def test_retry_by_ids_is_all_or_none(app: App, flaky: Any,
                                     db: psycopg.Connection[Any]) -> None:
    failed = fail(app, flaky, 1)
    waiting = flaky.apply_async((1,), countdown=3600)
    with pytest.raises(ValueError, match=waiting.id):
        app.retry([failed.id, waiting.id])
    assert failed.state == "FAILURE"  # not moved either
    assert failed.history() == []


def test_two_retries_at_once_move_the_job_once(app: App, flaky: Any,
                                               db: psycopg.Connection[Any]) -> None:
    failed = [fail(app, flaky, i) for i in range(2)]
    barrier = threading.Barrier(4)
    counts: list[int] = []
    errors: list[BaseException] = []

    def retry() -> None:
        try:
            barrier.wait(10)
            counts.append(len(app.retry(task="t.flaky", since=3600)))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=retry) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert sum(counts) == 2
    for result in failed:
        assert len(result.history()) == 1
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (2,)


def test_a_unique_key_held_by_a_live_job_blocks_the_retry(app: App, flaky: Any) -> None:
    first = flaky.apply_async((1,), unique_key="u")
    with running_worker(app), pytest.raises(ValueError):
        first.get(timeout=20)
    holder = flaky.apply_async((2,), unique_key="u", countdown=3600)
    assert holder.duplicate is False
    with pytest.raises(ValueError, match="unique_key is held by a live job"):
        first.retry()
    assert app.retry(task="t.flaky", since=3600) == []


# -- the CLI ------------------------------------------------------------------------------

def pgqueue(pg_dsn: str, schema: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PGQUEUE_DSN", "DATABASE_URL", "PGQUEUE_SCHEMA")}
    return subprocess.run([PGQUEUE, "retry", "--dsn", pg_dsn, "--schema", schema, *args],
                          capture_output=True, text=True, env=env, timeout=60)


def assert_one_line_error(run: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_cli_retry_by_id_and_by_task(app: App, flaky: Any, pg_dsn: str, schema: str) -> None:
    one, two = fail(app, flaky, 1), fail(app, flaky, 2)
    by_id = pgqueue(pg_dsn, schema, one.id)
    assert by_id.returncode == 0, by_id.stderr
    assert by_id.stdout.split() == [one.id]
    assert "retried 1 job" in by_id.stderr
    by_task = pgqueue(pg_dsn, schema, "--task", "t.flaky", "--since", "1h")
    assert by_task.returncode == 0, by_task.stderr
    assert by_task.stdout.split() == [two.id]
    flaky.fixed.touch()
    with running_worker(app):
        assert one.get(timeout=20) == 10 and two.get(timeout=20) == 20


@pytest.mark.parametrize("args, fragments", [
    ([], ["give job ids, or --task"]),
    (["--since", "yesterday"], ["--since 'yesterday'"]),
    (["--task", "t.flaky", "--state", "SUCCESS"], ["send a new one"]),
    (["not-a-job"], ["there is no job not-a-job"]),
    (["01900000-0000-7000-8000-000000000000"], ["there is no job"]),
    (["01900000-0000-7000-8000-000000000000", "--task", "t.flaky"], ["not both"]),
])
def test_cli_bad_input_is_one_error_line(pg_dsn: str, schema: str, args: list[str],
                                         fragments: list[str]) -> None:
    assert_one_line_error(pgqueue(pg_dsn, schema, *args), *fragments)


def test_cli_retry_of_a_live_job(app: App, flaky: Any, pg_dsn: str, schema: str) -> None:
    waiting = flaky.apply_async((1,), countdown=3600)
    assert_one_line_error(pgqueue(pg_dsn, schema, waiting.id), "is not finished")
