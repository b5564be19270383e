"""AsyncResult.get() takes Celery's keywords: each has its effect, or is a TypeError."""

from __future__ import annotations

from typing import Any

import pytest

from pgqueue import App
from tests.conftest import running_worker


def test_on_interval_is_called_while_waiting_and_propagate_states_decide(app: App) -> None:
    import threading

    @app.task(name="kw.slow_fail")
    def slow_fail() -> None:
        threading.Event().wait(0.5)
        raise ValueError("boom")

    ticks: list[int] = []
    with running_worker(app):
        result = slow_fail.delay()
        with pytest.raises(ValueError, match="boom"):
            result.get(timeout=20, interval=0.05, on_interval=lambda: ticks.append(1),
                       no_ack=False, follow_parents=True)
        assert ticks, "on_interval was never called while the job ran"
        # A failure is not raised when FAILURE is not among the states that propagate.
        value: Any = result.get(timeout=5, PROPAGATE_STATES=frozenset({"REVOKED"}))
        assert isinstance(value, ValueError)


def test_an_unknown_keyword_is_a_type_error(app: App) -> None:
    @app.task(name="kw.add")
    def add(x: int, y: int) -> int:
        return x + y

    with running_worker(app):
        result = add.delay(1, 2)
        assert result.get(timeout=20) == 3
        with pytest.raises(TypeError, match="nonsense"):
            result.get(timeout=5, nonsense=True)  # type: ignore[call-arg]


def test_revoke_refuses_what_it_cannot_honour(app: App) -> None:
    from pgqueue import AsyncResult

    result = AsyncResult("01a23fa6-6aa0-774f-95fd-fb784ac1d357", app=app)
    with pytest.raises(ValueError, match="signal='SIGKILL'.*not supported"):
        result.revoke(terminate=True, signal="SIGKILL")
    with pytest.raises(TypeError, match="wait=, timeout="):
        result.revoke(wait=True)
    with pytest.raises(TypeError, match="destination"):
        app.control.revoke(result.id, destination=["w1"])
    result.revoke(terminate=True, signal="SIGTERM")  # Celery's default: accepted
    assert result.state == "PENDING"  # unknown id: nothing to stop, nothing written
