"""``update_state(task_id=X)`` writes job X's state while X runs, from a task or from
outside a worker; a job that is not running is refused in one line, its row untouched."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgqueue import App, AsyncResult
from tests.conftest import running_worker, wait_until


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave a worker thread blocked


@pytest.fixture
def tasks(app: App, release: threading.Event) -> dict[str, Any]:
    @app.task(name="t.hold", track_started=True)
    def hold() -> str:
        release.wait(20)
        return "held"

    @app.task(name="t.report", bind=True)
    def report(self: Any, job_id: str, n: int) -> None:
        self.update_state(task_id=job_id, state="PROGRESS", meta={"n": n})

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    return {"hold": hold, "report": report, "add": add}


def test_a_task_updates_another_running_job(app: App, tasks: dict[str, Any],
                                            release: threading.Event) -> None:
    with running_worker(app, concurrency=2):
        held = tasks["hold"].delay()
        wait_until(lambda: held.state == "STARTED", message="the holder running")
        tasks["report"].delay(held.id, 7).get(timeout=10)
        assert held.state == "PROGRESS" and held.info == {"n": 7}
        release.set()
        assert held.get(timeout=10) == "held"  # the finish replaces the progress
    assert held.state == "SUCCESS"


def test_outside_a_worker_too(app: App, tasks: dict[str, Any],
                              release: threading.Event) -> None:
    with running_worker(app):
        held = tasks["hold"].delay()
        wait_until(lambda: held.state == "STARTED", message="the holder running")
        tasks["add"].update_state(task_id=held.id, state="HALFWAY", meta={"done": 0.5})
        assert held.state == "HALFWAY" and held.info == {"done": 0.5}
        release.set()
        held.get(timeout=10)


def test_a_job_that_is_not_running_is_refused(app: App, tasks: dict[str, Any],
                                              db: psycopg.Connection[Any]) -> None:
    queued = tasks["add"].delay(1, 2)
    add = tasks["add"]
    for job_id in (queued.id, str(uuid.uuid4())):
        with pytest.raises(ValueError, match="that job is not running") as caught:
            add.update_state(task_id=job_id, state="PROGRESS", meta={"n": 1})
        assert "\n" not in str(caught.value)
    assert db.execute("SELECT progress_state, meta FROM jobs").fetchall() == [(None, None)]
    with running_worker(app):
        assert queued.get(timeout=10) == 3
    with pytest.raises(ValueError, match="that job is not running"):
        add.update_state(task_id=queued.id, state="PROGRESS", meta={"n": 1})
    assert AsyncResult(queued.id, app=app).get(timeout=1) == 3  # the result is untouched


@pytest.mark.parametrize("bad", ["", "x" * 501, "a\x00b", 5])
def test_a_bad_task_id_is_one_line(app: App, tasks: dict[str, Any], bad: Any) -> None:
    with pytest.raises(ValueError, match="update_state task_id must be a string of 1 to 500"):
        tasks["add"].update_state(task_id=bad, state="PROGRESS")


def test_any_string_is_a_task_id_here_too(app: App, tasks: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="that job is not running"):  # not a uuid error
        tasks["add"].update_state(task_id="not-a-uuid", state="PROGRESS")


def test_a_running_task_failing_to_update_another_fails_loudly(
        app: App, tasks: dict[str, Any]) -> None:
    """Inside a task the refusal is the task's exception, visible in its result."""
    with running_worker(app):
        result = tasks["report"].delay(str(uuid.uuid4()), 1)
        with pytest.raises(ValueError, match="that job is not running"):
            result.get(timeout=10)
