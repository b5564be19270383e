"""``AsyncResult.get(on_message=, callback=)`` as Celery calls them: on_message with the
meta dict of each state the wait reads, callback once with the result returned."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pgqueue import App
from tests.conftest import running_worker, wait_until


@pytest.fixture
def step() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def tasks(app: App, step: threading.Event) -> dict[str, Any]:
    @app.task(name="t.steps", bind=True, track_started=True)
    def steps(self: Any) -> int:
        self.update_state(state="PROGRESS", meta={"done": 1})
        step.wait(20)
        return 42

    @app.task(name="t.boom")
    def boom() -> None:
        raise KeyError("boom")

    return {"steps": steps, "boom": boom}


def test_each_state_seen_once_then_the_callback(app: App, tasks: dict[str, Any],
                                                step: threading.Event) -> None:
    messages: list[dict[str, Any]] = []
    calls: list[tuple[str, Any]] = []
    with running_worker(app):
        result = tasks["steps"].delay()
        wait_until(lambda: result.state == "PROGRESS", message="progress")
        waiter = threading.Thread(target=lambda: result.get(
            timeout=20, interval=0.05, on_message=messages.append,
            callback=lambda *a: calls.append(a)))
        waiter.start()
        wait_until(lambda: messages, message="the first message")
        step.set()
        waiter.join(20)
    assert [m["status"] for m in messages] == ["PROGRESS", "SUCCESS"]
    assert messages[0]["result"] == {"done": 1} and messages[-1]["result"] == 42
    assert {m["task_id"] for m in messages} == {result.id}
    assert calls == [(result.id, 42)]


def test_a_finished_job_gives_one_message(app: App, tasks: dict[str, Any],
                                          step: threading.Event) -> None:
    step.set()
    with running_worker(app):
        result = tasks["steps"].delay()
        result.get(timeout=10)
    messages: list[dict[str, Any]] = []
    assert result.get(on_message=messages.append) == 42
    assert [m["status"] for m in messages] == ["SUCCESS"]


def test_a_propagated_failure_skips_the_callback(app: App, tasks: dict[str, Any]) -> None:
    calls: list[Any] = []
    messages: list[dict[str, Any]] = []
    with running_worker(app):
        result = tasks["boom"].delay()
        with pytest.raises(KeyError):
            result.get(timeout=10, callback=lambda *a: calls.append(a),
                       on_message=messages.append)
    assert calls == [] and messages[-1]["status"] == "FAILURE"
    exc = result.get(propagate=False, callback=lambda *a: calls.append(a))
    assert isinstance(exc, KeyError) and calls == [(result.id, exc)]


def test_a_receiver_that_raises_stops_the_wait_with_its_error(
        app: App, tasks: dict[str, Any], step: threading.Event) -> None:
    def broken(meta: dict[str, Any]) -> None:
        raise RuntimeError("receiver broke")

    result = tasks["steps"].delay()
    with pytest.raises(RuntimeError, match="receiver broke"):
        result.get(timeout=5, on_message=broken)
