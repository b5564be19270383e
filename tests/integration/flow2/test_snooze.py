"""``raise self.snooze(seconds)`` (issue 16, point 5): the job is put off without spending
an attempt, in every pool, and a hostile number of seconds is refused in the task."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import App, Snooze, Task
from tests.conftest import running_worker, wait_until
from tests.recorder import Recorder

POOLS = ["threads", "processes", "asyncio", "solo"]


@pytest.fixture
def record(tmp_path: Path) -> Recorder:
    return Recorder(tmp_path / "runs.jsonl")


@pytest.mark.parametrize("pool", POOLS)
def test_snooze_puts_the_job_off_without_spending_an_attempt(
        app: App, db: psycopg.Connection[Any], record: Recorder, pool: str) -> None:
    """max_retries=0: three snoozes, then a success; the attempt never grows."""
    @app.task(bind=True, name="t.sleepy", max_retries=0)
    def sleepy(self: Task) -> int:
        runs = len(record.events())
        record("run", retries=self.request.retries, attempt=self.request.attempt)
        if runs < 3:
            raise self.snooze(0.2)
        return runs

    result = sleepy.delay()
    with running_worker(app, pool=pool, concurrency=2):
        assert result.get(timeout=30) == 3
    runs = record.events()
    assert [(e["retries"], e["attempt"]) for e in runs] == [(0, 1)] * 4
    row = db.execute("SELECT state, attempt FROM results WHERE id = %s", [result.id]).fetchone()
    assert row == ("SUCCESS", 1)


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_a_snoozed_job_is_scheduled_for_later(
        app: App, db: psycopg.Connection[Any], record: Recorder, pool: str) -> None:
    @app.task(bind=True, name="t.later")
    def later(self: Task) -> str:
        if not record.events():
            record("run")
            raise self.snooze(timedelta(minutes=10))
        return "never"

    result = later.delay()
    with running_worker(app, pool=pool):
        row = wait_until(lambda: db.execute(
            "SELECT state, attempt, run_at - now(), options->'snoozed', worker FROM jobs "
            "WHERE id = %s AND state = 'scheduled'", [result.id]).fetchone(),
            timeout=20, message="the job to be snoozed")
    state, attempt, wait, snoozed, worker = row
    assert (state, attempt, snoozed, worker) == ("scheduled", 0, 1, None)
    assert timedelta(minutes=9) < wait <= timedelta(minutes=10)
    assert result.state == "PENDING"


@pytest.mark.parametrize("seconds, error", [
    (-1, "ValueError: t.hostile.snooze\\(\\): seconds must be from 0"),
    (math.nan, "ValueError"),
    (math.inf, "ValueError"),
    (-math.inf, "ValueError"),
    (10**12, "ValueError"),
    (True, "TypeError: t.hostile.snooze\\(\\) takes a number of seconds"),
    ("5", "TypeError"),
    (None, "TypeError"),
    (timedelta(days=-1), "ValueError"),
])
def test_hostile_seconds_fail_the_job_and_the_worker_goes_on(
        app: App, db: psycopg.Connection[Any], seconds: Any, error: str) -> None:
    @app.task(bind=True, name="t.hostile", max_retries=0)
    def hostile(self: Task, ok: bool) -> str:
        if ok:
            return "fine"
        raise self.snooze(seconds)

    bad, good = hostile.delay(False), hostile.delay(True)
    with running_worker(app):
        assert good.get(timeout=20) == "fine"
        with pytest.raises((ValueError, TypeError)):
            bad.get(timeout=20)
    row = db.execute("SELECT error FROM results WHERE id = %s", [bad.id]).fetchone()
    assert row is not None
    assert re.match(error, row[0]), row[0]


@pytest.mark.parametrize("seconds", [-1, math.nan, "soon"])
def test_a_snooze_made_by_hand_is_checked_too(app: App, db: psycopg.Connection[Any],
                                              seconds: Any) -> None:
    @app.task(name="t.handmade", max_retries=0)
    def handmade() -> None:
        raise Snooze(seconds)

    result = handmade.delay()
    with running_worker(app), pytest.raises(ValueError, match="snoozed for"):
        result.get(timeout=20)


def test_snooze_outside_a_worker_is_refused(app: App) -> None:
    @app.task(bind=True, name="t.direct")
    def direct(self: Task) -> None:
        raise self.snooze(1)

    with pytest.raises(RuntimeError, match="called outside a worker"):
        direct()


def test_snooze_in_eager_mode_runs_again_at_once(app: App, record: Recorder) -> None:
    @app.task(bind=True, name="t.eager")
    def eager(self: Task) -> int:
        record("run", attempt=self.request.attempt)
        if len(record.events()) < 3:
            raise self.snooze(60)
        return 7

    assert eager.apply().get() == 7
    assert [e["attempt"] for e in record.events()] == [1, 1, 1]


def test_snooze_calls_no_retry_or_failure_hook(app: App, record: Recorder) -> None:
    class Watched(app.Task):  # type: ignore[name-defined,misc]
        def on_retry(self, *args: Any) -> None:
            record("on_retry")

        def on_failure(self, *args: Any) -> None:
            record("on_failure")

        def after_return(self, *args: Any) -> None:
            record("after_return")

    @app.task(bind=True, base=Watched, name="t.watched")
    def watched(self: Task) -> str:
        if not record.events(kind="run"):
            record("run")
            raise self.snooze(0)
        return "done"

    result = watched.delay()
    with running_worker(app):
        assert result.get(timeout=20) == "done"
    assert record.kinds() == ["run", "after_return"]


def test_snooze_returns_the_signal_with_throw_false(app: App) -> None:
    @app.task(bind=True, name="t.signal")
    def signal(self: Task) -> Any:
        found = self.snooze(2.5, throw=False)
        return [type(found).__name__, found.seconds]

    assert signal.apply().get() == ["Snooze", 2.5]
