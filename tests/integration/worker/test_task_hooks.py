"""Task.__call__ and the hooks (issue 14, point 3), in every pool and in eager mode.

Each run goes through ``Task.__call__``, so an override wraps it (Flask's ContextTask);
``before_start``, ``on_success``, ``on_failure``, ``on_retry`` and ``after_return`` are
called with Celery's arguments, in Celery's order. A hook that raises (even
``SystemExit``) is logged and changes nothing; the pool goes on.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import flask
import pytest

from pgqueue import App, Task
from tests.conftest import running_worker, wait_until
from tests.recorder import Recorder

POOLS = ["threads", "processes", "asyncio", "solo"]


@pytest.fixture
def record(tmp_path: Path) -> Recorder:
    return Recorder(tmp_path / "seen.jsonl")


def hooked_tasks(app: App, record: Recorder) -> SimpleNamespace:
    class Hooked(app.Task):  # type: ignore[name-defined,misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            record("__call__", id=self.request.id, args=list(args))
            return super().__call__(*args, **kwargs)

        def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
            record("before_start", id=task_id, args=args, kwargs=kwargs)

        def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
            record("on_success", id=task_id, retval=retval, args=args, kwargs=kwargs)

        def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any,
                       einfo: Any) -> None:
            record("on_failure", id=task_id, exc=type(exc).__name__, message=str(exc),
                   traceback=einfo.traceback, same=einfo.exception is exc, args=args)

        def on_retry(self, exc: BaseException, task_id: str, args: Any, kwargs: Any,
                     einfo: Any) -> None:
            record("on_retry", id=task_id, exc=type(exc).__name__, message=str(exc),
                   traceback=einfo.traceback)

        def after_return(self, status: str, retval: Any, task_id: str, args: Any,
                         kwargs: Any, einfo: Any) -> None:
            record("after_return", id=task_id, status=status, retval=repr(retval),
                   einfo=None if einfo is None else type(einfo.exception).__name__)

    @app.task(base=Hooked, name="hooks.ok")
    def ok(x: int) -> int:
        return x * 2

    @app.task(base=Hooked, name="hooks.bad")
    def bad() -> None:
        raise ValueError("boom")

    @app.task(base=Hooked, bind=True, max_retries=1, name="hooks.again")
    def again(self: Task) -> str:
        if self.request.retries == 0:
            raise self.retry(exc=KeyError("once"), countdown=0)
        return "second"

    @app.task(base=Hooked, name="hooks.aok")
    async def aok(x: int) -> int:
        await asyncio.sleep(0)
        return x * 3

    return SimpleNamespace(Hooked=Hooked, ok=ok, bad=bad, again=again, aok=aok)


SUCCESS_ORDER = ["before_start", "__call__", "on_success", "after_return"]
FAILURE_ORDER = ["before_start", "__call__", "on_failure", "after_return"]


def check_hooks(record: Recorder, ids: dict[str, str]) -> None:
    assert record.kinds(id=ids["ok"]) == SUCCESS_ORDER
    assert record.kinds(id=ids["aok"]) == SUCCESS_ORDER
    assert record.kinds(id=ids["bad"]) == FAILURE_ORDER
    assert record.kinds(id=ids["again"]) == [
        "before_start", "__call__", "on_retry", "before_start", "__call__", "on_success",
        "after_return"]
    [called] = record.events(id=ids["ok"], kind="__call__")
    assert called["args"] == [2]
    [start] = record.events(id=ids["ok"], kind="before_start")
    assert (start["args"], start["kwargs"]) == ([2], {})
    [success] = record.events(id=ids["ok"], kind="on_success")
    assert (success["retval"], success["args"], success["kwargs"]) == (4, [2], {})
    assert record.events(id=ids["aok"], kind="on_success")[0]["retval"] == 6
    [done] = record.events(id=ids["ok"], kind="after_return")
    assert (done["status"], done["retval"], done["einfo"]) == ("SUCCESS", "4", None)
    [failed] = record.events(id=ids["bad"], kind="on_failure")
    assert (failed["exc"], failed["message"], failed["same"]) == ("ValueError", "boom", True)
    assert "Traceback" in failed["traceback"] and "ValueError: boom" in failed["traceback"]
    [done] = record.events(id=ids["bad"], kind="after_return")
    assert (done["status"], done["retval"], done["einfo"]) == \
        ("FAILURE", "ValueError('boom')", "ValueError")
    [retried] = record.events(id=ids["again"], kind="on_retry")
    assert (retried["exc"], retried["message"]) == ("KeyError", "'once'")
    assert "Retry" in retried["traceback"]


@pytest.mark.parametrize("pool", POOLS)
def test_every_run_goes_through_call_and_the_hooks_in_celerys_order(
        app: App, record: Recorder, pool: str) -> None:
    tasks = hooked_tasks(app, record)
    with running_worker(app, pool=pool, concurrency=2):
        results = {"ok": tasks.ok.delay(2), "aok": tasks.aok.delay(2),
                   "bad": tasks.bad.delay(), "again": tasks.again.delay()}
        assert results["ok"].get(timeout=20) == 4
        assert results["aok"].get(timeout=20) == 6
        assert results["again"].get(timeout=20) == "second"
        with pytest.raises(ValueError, match="boom"):
            results["bad"].get(timeout=20)
    check_hooks(record, {name: r.id for name, r in results.items()})


def test_eager_runs_call_and_hooks_the_same_way(app: App, record: Recorder) -> None:
    tasks = hooked_tasks(app, record)
    results = {"ok": tasks.ok.apply((2,)), "aok": tasks.aok.apply((2,)),
               "bad": tasks.bad.apply(), "again": tasks.again.apply()}
    assert results["ok"].get() == 4 and results["again"].get() == "second"
    check_hooks(record, {name: r.id for name, r in results.items()})
    app.conf.task_always_eager = True
    eager = tasks.ok.delay(5)
    assert eager.get() == 10
    assert record.kinds(id=eager.id) == SUCCESS_ORDER


def test_calling_a_task_directly_runs_it_here_through_call(app: App,
                                                          record: Recorder) -> None:
    tasks = hooked_tasks(app, record)
    assert tasks.ok(21) == 42
    assert record.kinds(kind="__call__") == ["__call__"]  # no hooks: not a worker's run
    assert tasks.ok.request.called_directly

    @app.task(bind=True)
    def who(self: Task, *args: Any) -> tuple[bool, list[Any]]:
        return self.request.called_directly, self.request.args

    assert who(1, 2) == (True, [1, 2])
    assert asyncio.run(tasks.aok(2)) == 6  # __call__ returns the coroutine


# -- hostile hooks and __call__ overrides ---------------------------------------------------
def hostile_tasks(app: App, record: Recorder) -> SimpleNamespace:
    class HostileHooks(app.Task):  # type: ignore[name-defined,misc]
        def on_success(self, *args: Any) -> None:
            raise RuntimeError("on_success broke")

        def on_failure(self, *args: Any) -> None:
            sys.exit(4)

        def on_retry(self, *args: Any) -> None:
            raise KeyboardInterrupt

        def after_return(self, *args: Any) -> None:
            raise RuntimeError("after_return broke")

    class StartFails(app.Task):  # type: ignore[name-defined,misc]
        def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
            raise LookupError("not ready")

    class CallRaises(app.Task):  # type: ignore[name-defined,misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            raise PermissionError("denied by __call__")

    class CallExits(app.Task):  # type: ignore[name-defined,misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            sys.exit(3)

    @app.task(base=HostileHooks, name="hostile.ok")
    def ok() -> str:
        return "fine"

    @app.task(base=HostileHooks, name="hostile.bad")
    def bad() -> None:
        raise ValueError("the task's own error")

    @app.task(base=HostileHooks, bind=True, max_retries=1, name="hostile.again")
    def again(self: Task) -> str:
        if self.request.retries == 0:
            raise self.retry(countdown=0)
        return "second"

    @app.task(base=StartFails, name="hostile.never_starts")
    def never_starts() -> None:
        record("body ran")

    @app.task(base=CallRaises, name="hostile.call_raises")
    def call_raises() -> None:
        record("body ran")

    @app.task(base=CallExits, name="hostile.call_exits")
    def call_exits() -> None:
        record("body ran")

    @app.task(name="hostile.echo")
    def echo(x: int) -> int:
        return x

    return SimpleNamespace(ok=ok, bad=bad, again=again, never_starts=never_starts,
                           call_raises=call_raises, call_exits=call_exits, echo=echo)


@pytest.mark.parametrize("pool", POOLS)
def test_hooks_and_call_overrides_that_raise_or_exit_never_change_the_outcome(
        app: App, record: Recorder, pool: str, caplog: pytest.LogCaptureFixture) -> None:
    tasks = hostile_tasks(app, record)
    with running_worker(app, pool=pool, concurrency=2) as worker:
        # Twice each: enough to kill both executors if anything got through.
        ok = [tasks.ok.delay() for _ in range(2)]
        bad = [tasks.bad.delay() for _ in range(2)]
        again = [tasks.again.delay() for _ in range(2)]
        starts = tasks.never_starts.delay()
        raises = tasks.call_raises.delay()
        exits = tasks.call_exits.delay()
        assert [r.get(timeout=20) for r in ok] == ["fine", "fine"]
        assert [r.get(timeout=20) for r in again] == ["second", "second"]
        for r in bad:
            with pytest.raises(ValueError, match="the task's own error"):
                r.get(timeout=20)
        with pytest.raises(LookupError, match="not ready"):
            starts.get(timeout=20)
        with pytest.raises(PermissionError, match="denied by __call__"):
            raises.get(timeout=20)
        with pytest.raises(RuntimeError, match=r"SystemExit\(3\) raised by the task"):
            exits.get(timeout=20)
        assert [tasks.echo.delay(i).get(timeout=20) for i in range(4)] == list(range(4))
        assert worker.pool.free_slots() == worker.pool.size
    assert record.kinds(kind="body ran") == []
    if pool != "processes":  # a child's log lines do not reach caplog
        assert "its on_success hook raised RuntimeError: on_success broke" in caplog.text
        assert "its on_failure hook raised SystemExit: 4" in caplog.text
        assert "its on_retry hook raised KeyboardInterrupt" in caplog.text


def test_hostile_hooks_change_nothing_in_eager_mode(app: App, record: Recorder) -> None:
    tasks = hostile_tasks(app, record)
    assert tasks.ok.apply().get() == "fine"
    assert tasks.again.apply().get() == "second"
    assert isinstance(tasks.bad.apply().result, ValueError)
    assert isinstance(tasks.call_raises.apply().result, PermissionError)


# -- Flask's ContextTask ----------------------------------------------------------------------
def context_tasks(app: App) -> tuple[flask.Flask, SimpleNamespace]:
    """The pattern of Flask's Celery guide, with only the import changed."""
    flask_app = flask.Flask("hooks_flask")
    flask_app.config["GREETING"] = "hello from flask"

    class ContextTask(app.Task):  # type: ignore[name-defined,misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with flask_app.app_context():
                return self.run(*args, **kwargs)

    class AsyncContextTask(app.Task):  # type: ignore[name-defined,misc]
        async def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with flask_app.app_context():
                return await self.run(*args, **kwargs)

    app.Task = ContextTask  # Celery's guide: celery.Task = ContextTask

    @app.task(name="flask.greeting")
    def greeting() -> str:
        return str(flask.current_app.config["GREETING"])

    @app.task(bind=True, name="flask.bound")
    def bound(self: Task) -> list[Any]:
        return [flask.current_app.name, self.request.id]

    @app.task(base=AsyncContextTask, name="flask.async_greeting")
    async def async_greeting() -> str:
        await asyncio.sleep(0)
        return str(flask.current_app.config["GREETING"])

    return flask_app, SimpleNamespace(greeting=greeting, bound=bound,
                                      async_greeting=async_greeting)


@pytest.mark.parametrize("pool", POOLS)
def test_flask_context_task_runs_inside_the_app_context(app: App, pool: str) -> None:
    flask_app, tasks = context_tasks(app)
    assert not flask.has_app_context()
    with running_worker(app, pool=pool, concurrency=2):
        assert tasks.greeting.delay().get(timeout=20) == "hello from flask"
        bound = tasks.bound.delay()
        assert bound.get(timeout=20) == ["hooks_flask", bound.id]
        assert tasks.async_greeting.delay().get(timeout=20) == "hello from flask"
    assert tasks.greeting.apply().get() == "hello from flask"
    assert tasks.greeting() == "hello from flask"


def test_without_the_context_task_flask_code_fails_as_it_would_in_celery(app: App) -> None:
    flask.Flask("no_context")

    @app.task
    def greeting() -> str:
        return str(flask.current_app.name)

    with running_worker(app):
        result = greeting.delay()
        wait_until(result.ready, timeout=20)
    assert "Working outside of application context" in str(result.result)
