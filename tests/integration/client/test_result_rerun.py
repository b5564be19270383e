"""An ``AsyncResult`` follows a job run again under the same id (issue 14, point 9): a
handle that saw the first run's final state sees the re-run, with no fresh handle."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from pgqueue import App
from tests.conftest import running_worker, wait_until


def test_a_handle_follows_a_rerun_under_the_same_id(app: App,
                                                    db: psycopg.Connection[Any]) -> None:
    gate = threading.Event()

    @app.task(name="rerun.double")
    def double(x: int) -> int:
        return x * 2

    @app.task(name="rerun.gated")
    def gated(x: int) -> int:
        assert gate.wait(20)
        return x * 3

    with running_worker(app, concurrency=2):
        first = double.delay(2)
        assert first.get(timeout=20) == 4
        assert first.state == "SUCCESS" and first.ready()

        # Sent again under the same id (Celery lets a caller reuse a task_id).
        gated.apply_async((5,), task_id=first.id)
        wait_until(lambda: first.state == "STARTED" or first.state == "PENDING"
                   and db.execute("SELECT state FROM jobs WHERE id = %s",
                                  [first.id]).fetchone() == ("started",),
                   timeout=20, message="the re-run to show")
        assert not first.ready()  # the old SUCCESS is not current any more
        assert first.name == "rerun.gated"
        gate.set()
        assert first.get(timeout=20) == 15  # the same handle waits for the re-run
        assert first.state == "SUCCESS" and first.args == [5]


def test_a_failure_then_a_success_under_the_same_id(app: App) -> None:
    @app.task(name="rerun.flaky")
    def flaky(fail: bool) -> str:
        if fail:
            raise ValueError("first time")
        return "second time"

    with running_worker(app):
        handle = flaky.delay(True)
        with pytest.raises(ValueError):
            handle.get(timeout=20)
        assert handle.failed()
        flaky.apply_async((False,), task_id=handle.id)
        assert handle.get(timeout=20) == "second time"
        assert handle.successful() and handle.traceback is None


def test_get_of_a_finished_job_reads_once_and_opens_no_listener(app: App) -> None:
    @app.task(name="rerun.one")
    def one() -> int:
        return 1

    with running_worker(app):
        done = one.delay()
        wait_until(done.ready, timeout=20)
    reader = App("reader", dsn=app.conf.dsn, schema=app.schema, set_as_current=False)
    try:
        assert reader.AsyncResult(done.id).get(timeout=5) == 1
        assert reader._waiter is None  # no LISTEN connection for a finished job
    finally:
        reader.close()
