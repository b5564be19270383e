"""A requested ``revoke(terminate=True)`` is not an error: no ERROR record, in every pool
(issue 19, point 5); the job ends REVOKED."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from pgqueue import App
from tests.conftest import running_worker, wait_until

POOLS = ("threads", "solo", "processes", "asyncio")


def _spinner(app: App, pool: str, marker: Path) -> object:
    if pool == "asyncio":  # a plain function would keep its thread after the cancel
        @app.task(name="t.spin")
        async def spin_async() -> None:
            marker.write_text("started")
            while True:
                await asyncio.sleep(0.01)
        return spin_async

    @app.task(name="t.spin")
    def spin() -> None:
        marker.write_text("started")
        while True:
            time.sleep(0.01)
    return spin


@pytest.mark.parametrize("pool", POOLS)
def test_terminate_logs_no_error_and_ends_revoked(
        app: App, pool: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "started"
    spin = _spinner(app, pool, marker)

    @app.task(name="t.after")
    def after() -> int:
        return 7

    caplog.set_level(logging.DEBUG, logger="pgqueue")
    with running_worker(app, pool=pool, concurrency=1):
        result = spin.delay()  # type: ignore[attr-defined]
        wait_until(marker.exists, timeout=20, message="the task to start")
        result.revoke(terminate=True)
        wait_until(result.ready, timeout=10, message="the terminated job to end")
        assert result.state == "REVOKED"
        # the slot is free again and the next job runs: the termination is over
        assert after.delay().get(timeout=20) == 7

    records = [r for r in caplog.records if r.name.startswith("pgqueue")]
    assert not [r for r in records if r.levelno >= logging.ERROR], \
        [r.getMessage() for r in records if r.levelno >= logging.ERROR]
    about_it = [r for r in records if result.id in r.getMessage()
                and r.levelno >= logging.INFO]
    assert about_it and all(r.levelno <= logging.WARNING for r in about_it)
    assert sum(r.levelno == logging.WARNING for r in about_it) <= 1, \
        [r.getMessage() for r in about_it]
    assert any("terminated by request" in r.getMessage() for r in about_it), \
        [r.getMessage() for r in about_it]


def test_a_terminated_task_that_autoretries_every_exception_is_not_retried(
        app: App, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "started"

    @app.task(autoretry_for=(Exception,), max_retries=3, default_retry_delay=0)
    def stubborn() -> None:
        marker.write_text("started")
        while True:
            time.sleep(0.01)

    caplog.set_level(logging.INFO, logger="pgqueue")
    with running_worker(app):
        result = stubborn.delay()
        wait_until(marker.exists, timeout=20, message="the task to start")
        result.revoke(terminate=True)
        wait_until(result.ready, timeout=10, message="the terminated job to end")
    assert result.state == "REVOKED"
    assert not [r for r in caplog.records if "retry" in r.getMessage()]


def test_a_task_raising_task_revoked_error_itself_still_fails_loudly(
        app: App, caplog: pytest.LogCaptureFixture) -> None:
    from pgqueue.exceptions import TaskRevokedError

    @app.task
    def waits_on_a_revoked_job() -> None:
        raise TaskRevokedError("the job I waited for was revoked")

    caplog.set_level(logging.INFO, logger="pgqueue")
    with running_worker(app):
        result = waits_on_a_revoked_job.delay()
        wait_until(result.ready, timeout=10, message="the job to end")
    assert result.state == "FAILURE"
    assert [r for r in caplog.records if r.levelno == logging.ERROR
            and result.id in r.getMessage() and "TaskRevokedError" in r.getMessage()]


def test_a_terminated_job_sends_task_revoked_not_task_failure(
        app: App, tmp_path: Path) -> None:
    from pgqueue import signals

    marker = tmp_path / "started"
    seen: list[str] = []
    failed: list[str] = []

    class Base(app.Task):  # type: ignore[name-defined,misc]
        def on_failure(self, *args: object) -> None:
            failed.append("on_failure")

    @app.task(base=Base)
    def spin() -> None:
        marker.write_text("started")
        while True:
            time.sleep(0.01)

    def on_revoked(**kw: object) -> None:
        seen.append("task_revoked")

    def on_failure(**kw: object) -> None:
        failed.append("task_failure")

    signals.task_revoked.connect(on_revoked, weak=False)
    signals.task_failure.connect(on_failure, weak=False)
    try:
        with running_worker(app):
            result = spin.delay()
            wait_until(marker.exists, timeout=20, message="the task to start")
            result.revoke(terminate=True)
            wait_until(result.ready, timeout=10, message="the terminated job to end")
            wait_until(lambda: bool(seen), timeout=20,
                       message="task_revoked")
    finally:
        signals.task_revoked.disconnect(on_revoked)
        signals.task_failure.disconnect(on_failure)
    assert result.state == "REVOKED" and seen == ["task_revoked"] and failed == []
