"""Celery's signals (issue 14, point 4), sent in every pool with Celery's senders and
arguments; receivers that raise, exit or block never change an outcome nor stop a worker.

Receivers write to a file (tests/recorder.py): under ``-P processes`` the task signals
are sent in the child that runs the task.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import App, Task, signals
from pgqueue.services.beat import Beat
from pgqueue.signals import Signal
from pgqueue.worker import Worker
from tests.conftest import running_worker, wait_until
from tests.recorder import Recorder

POOLS = ["threads", "processes", "asyncio", "solo"]
Connect = Callable[..., Any]


@pytest.fixture
def record(tmp_path: Path) -> Recorder:
    return Recorder(tmp_path / "seen.jsonl")


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Connect receivers for this test only (the signals are global)."""
    done: list[tuple[Signal, Any, Any]] = []

    def add(sig: Signal, receiver: Any, sender: Any = None) -> Any:
        sig.connect(receiver, sender=sender, weak=False)
        done.append((sig, receiver, sender))
        return receiver

    yield add
    for sig, receiver, sender in done:
        sig.disconnect(receiver, sender=sender)


def sender_name(sender: Any) -> Any:
    return getattr(sender, "name", sender) if not isinstance(sender, str) else sender


def wire_tracer_and_error_tracker(connect: Connect, record: Recorder) -> None:
    """Receivers shaped like an error tracker's (task_failure) and a tracer's
    (publish with headers, prerun/postrun), writing down what they see."""
    def before_publish(sender: Any = None, headers: Any = None, body: Any = None,
                       routing_key: Any = None, **kwargs: Any) -> None:
        headers["traceparent"] = "00-trace-span-01"  # a tracer injects its context
        record("before_task_publish", id=headers["id"], sender=sender, task=headers["task"],
               args=body[0], kwargs=body[1], routing_key=routing_key,
               has=sorted(k for k in ("properties", "declare", "retry_policy", "exchange")
                          if k in kwargs))

    def after_publish(sender: Any = None, headers: Any = None, **kwargs: Any) -> None:
        record("after_task_publish", id=headers["id"], sender=sender,
               traceparent=headers.get("traceparent"))

    def prerun(sender: Any = None, task_id: Any = None, task: Any = None, args: Any = None,
               kwargs: Any = None, **rest: Any) -> None:
        record("task_prerun", id=task_id, sender=sender_name(sender), same=task is sender,
               args=args, kwargs=kwargs, request_id=task.request.id)

    def postrun(sender: Any = None, task_id: Any = None, retval: Any = None,
                state: Any = None, **rest: Any) -> None:
        record("task_postrun", id=task_id, sender=sender_name(sender), retval=repr(retval),
               state=state)

    def success(sender: Any = None, result: Any = None, **rest: Any) -> None:
        record("task_success", id=sender.request.id, result=result)

    def failure(sender: Any = None, task_id: Any = None, exception: Any = None,
                traceback: Any = None, einfo: Any = None, args: Any = None,
                **rest: Any) -> None:
        record("task_failure", id=task_id, exception=repr(exception),
               has_traceback=traceback is not None, einfo=einfo.traceback, args=args)

    def retry(sender: Any = None, request: Any = None, reason: Any = None, einfo: Any = None,
              **rest: Any) -> None:
        record("task_retry", id=request.id, reason=repr(reason),
               einfo=type(einfo.exception).__name__)

    for sig, receiver in ((signals.before_task_publish, before_publish),
                          (signals.after_task_publish, after_publish),
                          (signals.task_prerun, prerun), (signals.task_postrun, postrun),
                          (signals.task_success, success), (signals.task_failure, failure),
                          (signals.task_retry, retry)):
        connect(sig, receiver)


def traced_tasks(app: App) -> tuple[Any, Any, Any]:
    @app.task(name="sig.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="sig.fails")
    def fails(why: str) -> None:
        raise ValueError(why)

    @app.task(name="sig.retries", bind=True, max_retries=1)
    def retries(self: Task) -> str:
        if self.request.retries == 0:
            raise self.retry(exc=ConnectionError("flaky"), countdown=0)
        return "done"

    return add, fails, retries


@pytest.mark.parametrize("pool", POOLS)
def test_a_tracer_and_an_error_tracker_see_every_task_as_in_celery(
        app: App, record: Recorder, connect: Connect, pool: str) -> None:
    wire_tracer_and_error_tracker(connect, record)
    add, fails, retries = traced_tasks(app)
    with running_worker(app, pool=pool, concurrency=2):
        ok = add.apply_async((2, 3), queue="default")
        bad = fails.delay("wrong input")
        again = retries.delay()
        assert ok.get(timeout=20) == 5 and again.get(timeout=20) == "done"
        with pytest.raises(ValueError):
            bad.get(timeout=20)

    def ran(job_id: str) -> list[str]:
        """The worker's signals (the producer's after_task_publish may come after the
        worker's first ones: the job can start before the INSERT returns)."""
        kinds = record.kinds(id=job_id)
        assert kinds[0] == "before_task_publish" and kinds.count("after_task_publish") == 1
        return [k for k in kinds if "publish" not in k]

    assert ran(ok.id) == ["task_prerun", "task_success", "task_postrun"]
    assert ran(bad.id) == ["task_prerun", "task_failure", "task_postrun"]
    assert ran(again.id) == ["task_prerun", "task_retry", "task_postrun", "task_prerun",
                             "task_success", "task_postrun"]

    [published] = record.events(id=ok.id, kind="before_task_publish")
    assert published["sender"] == published["task"] == "sig.add"
    assert (published["args"], published["kwargs"]) == ([2, 3], {})
    assert published["routing_key"] == "default"
    assert published["has"] == ["declare", "exchange", "properties", "retry_policy"]
    [after] = record.events(id=ok.id, kind="after_task_publish")
    assert (after["sender"], after["traceparent"]) == ("sig.add", "00-trace-span-01")
    [pre] = record.events(id=ok.id, kind="task_prerun")
    assert (pre["sender"], pre["same"], pre["args"], pre["kwargs"], pre["request_id"]) == \
        ("sig.add", True, [2, 3], {}, ok.id)
    [post] = record.events(id=ok.id, kind="task_postrun")
    assert (post["retval"], post["state"]) == ("5", "SUCCESS")
    assert record.events(id=ok.id, kind="task_success")[0]["result"] == 5
    [failed] = record.events(id=bad.id, kind="task_failure")
    assert failed["exception"] == "ValueError('wrong input')" and failed["has_traceback"]
    assert "ValueError: wrong input" in failed["einfo"] and failed["args"] == ["wrong input"]
    [post] = record.events(id=bad.id, kind="task_postrun")
    assert (post["retval"], post["state"]) == ("ValueError('wrong input')", "FAILURE")
    [retried] = record.events(id=again.id, kind="task_retry")
    assert "flaky" in retried["reason"] and retried["einfo"] == "Retry"
    assert [e["state"] for e in record.events(id=again.id, kind="task_postrun")] == \
        ["RETRY", "SUCCESS"]
    if pool == "processes":  # task signals are sent in the child that ran the task
        assert {e["pid"] for e in record.events(kind="task_prerun")} - {os.getpid()}
        assert record.events(kind="task_prerun", pid=os.getpid()) == []


def test_eager_runs_send_the_task_signals_but_not_the_publish_ones(
        app: App, record: Recorder, connect: Connect) -> None:
    wire_tracer_and_error_tracker(connect, record)
    add, fails, retries = traced_tasks(app)
    app.conf.task_always_eager = True
    ok = add.delay(1, 2)
    assert record.kinds(id=ok.id) == ["task_prerun", "task_success", "task_postrun"]
    bad = fails.apply(("no",))
    assert record.kinds(id=bad.id) == ["task_prerun", "task_failure", "task_postrun"]


def test_a_receiver_connected_to_one_task_hears_only_that_task(
        app: App, connect: Connect) -> None:
    add, fails, _ = traced_tasks(app)
    by_name: list[str] = []
    by_object: list[str] = []
    connect(signals.task_prerun, lambda task_id=None, **kw: by_name.append(task_id),
            sender="sig.add")
    connect(signals.task_postrun, lambda task_id=None, **kw: by_object.append(task_id),
            sender=add)
    connect(signals.after_task_publish,
            lambda headers=None, **kw: by_object.append("published " + headers["id"]),
            sender=add)  # publish signals send the name: the task object matches it
    with running_worker(app):
        ok = add.delay(1, 1)
        ok.get(timeout=20)
        with pytest.raises(ValueError):
            fails.delay("x").get(timeout=20)
    assert by_name == [ok.id]
    assert sorted(by_object) == [ok.id, f"published {ok.id}"]  # either may come first


# -- hostile receivers ----------------------------------------------------------------------
@pytest.mark.parametrize("pool", POOLS)
def test_receivers_that_raise_exit_or_block_change_no_outcome(
        app: App, connect: Connect, pool: str, caplog: pytest.LogCaptureFixture) -> None:
    add, fails, retries = traced_tasks(app)

    def raises(**kwargs: Any) -> None:
        raise RuntimeError("receiver broke")

    def exits(**kwargs: Any) -> None:
        sys.exit(5)

    def blocks(**kwargs: Any) -> None:
        time.sleep(0.05)  # a receiver that blocks briefly (a slow exporter, say)

    for sig in (signals.task_prerun, signals.task_postrun, signals.task_success,
                signals.task_failure, signals.task_retry, signals.task_received,
                signals.worker_ready, signals.worker_process_init, signals.heartbeat_sent,
                signals.before_task_publish, signals.after_task_publish):
        connect(sig, raises)
        connect(sig, blocks)
        if sig not in (signals.before_task_publish, signals.after_task_publish):
            connect(sig, exits)  # the producer's send() lets SystemExit through
    with running_worker(app, pool=pool, concurrency=2) as worker:
        results = [add.delay(i, i) for i in range(4)]
        bad = [fails.delay("still mine") for _ in range(2)]
        again = retries.delay()
        assert [r.get(timeout=30) for r in results] == [0, 2, 4, 6]
        for r in bad:
            with pytest.raises(ValueError, match="still mine"):
                r.get(timeout=30)
        assert again.get(timeout=30) == "done"
        assert add.delay(5, 5).get(timeout=30) == 10
        assert worker.pool.free_slots() == worker.pool.size
    assert "receiver broke" in caplog.text  # at least the producer's and worker's own


# -- task_revoked, task_unknown, task_rejected, task_received, task_internal_error ----------
def test_revoked_unknown_rejected_and_received(app: App, db: psycopg.Connection[Any],
                                              connect: Connect) -> None:
    seen: list[tuple[str, Any]] = []
    connect(signals.task_received, lambda sender=None, request=None, **kw: seen.append(
        ("received", (request.id, request.task, isinstance(sender, Worker)))))
    connect(signals.task_unknown, lambda name=None, id=None, exc=None, **kw: seen.append(
        ("unknown", (name, id, type(exc).__name__))))
    connect(signals.task_rejected, lambda message=None, exc=None, **kw: seen.append(
        ("rejected", (message.id, type(exc).__name__))))
    connect(signals.task_revoked, lambda sender=None, request=None, **kw: seen.append(
        ("revoked", (sender.name, request.id, kw["terminated"], kw["signum"], kw["expired"]))))

    @app.task(name="sig.echo")
    def echo(x: int) -> int:
        return x

    @app.task(name="sig.sleeps")
    def sleeps() -> None:
        time.sleep(30)

    with running_worker(app, pool="processes", concurrency=2):
        unknown = app.send_task("sig.nobody_knows")
        wait_until(unknown.ready, timeout=20)
        row = db.execute(
            "INSERT INTO jobs (id, queue, task, args, kwargs, priority, options) VALUES "
            "(gen_random_uuid(), 'default', 'sig.echo', '{\"a\": 1}'::jsonb, '{}', 5, '{}') "
            "RETURNING id::text").fetchone()
        assert row is not None
        wait_until(lambda: app.AsyncResult(row[0]).ready(), timeout=20)
        running = sleeps.delay()
        wait_until(lambda: db.execute("SELECT state FROM jobs WHERE id = %s",
                                      [running.id]).fetchone() == ("started",), timeout=20)
        running.revoke(terminate=True)
        wait_until(running.ready, timeout=20)
    assert ("unknown", ("sig.nobody_knows", unknown.id, "NotRegistered")) in seen
    assert ("rejected", (row[0], "MalformedJob")) in seen
    assert ("revoked", ("sig.sleeps", running.id, True, signal.SIGKILL, False)) in seen
    assert ("received", (running.id, "sig.sleeps", True)) in seen
    assert ("received", (unknown.id, "sig.nobody_knows", True)) in seen


def test_expired_jobs_send_task_revoked_where_they_would_have_run(
        app: App, connect: Connect) -> None:
    seen: list[tuple[Any, ...]] = []
    connect(signals.task_revoked, lambda sender=None, request=None, **kw: seen.append(
        (sender.name, request.id, kw["terminated"], kw["expired"])))

    @app.task(name="sig.late")
    def late() -> None:
        pass

    result = late.apply_async(expires=0.2)
    deadline = time.monotonic() + 0.3
    wait_until(lambda: time.monotonic() > deadline, message="the job to expire")
    with running_worker(app):
        wait_until(result.ready, timeout=20)
    assert result.state == "REVOKED"
    assert seen == [("sig.late", result.id, False, True)]


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_an_error_outside_the_task_body_sends_task_internal_error(
        app: App, connect: Connect, pool: str) -> None:
    seen: list[tuple[Any, ...]] = []
    connect(signals.task_internal_error, lambda sender=None, task_id=None, exception=None,
            einfo=None, **kw: seen.append((sender.name, task_id, repr(exception),
                                           einfo.internal)))

    class BrokenAfterRun(Task):
        @property  # type: ignore[override]
        def ignore_result(self) -> bool:  # read by the worker once the task returned
            if self.request.called_directly:
                return False
            raise RuntimeError("broken task class")

    @app.task(base=BrokenAfterRun, name="sig.broken")
    def broken() -> int:
        return 1

    @app.task(name="sig.fine")
    def fine() -> int:
        return 2

    with running_worker(app, pool=pool):
        result = broken.delay()
        wait_until(result.ready, timeout=20)
        assert fine.delay().get(timeout=20) == 2
    assert result.state == "FAILURE"
    assert seen == [("sig.broken", result.id, "RuntimeError('broken task class')", True)]


# -- worker, process, beat and app signals --------------------------------------------------
@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_worker_lifecycle_signals(app: App, record: Recorder, connect: Connect,
                                  pool: str) -> None:
    def recorder(name: str) -> Any:
        def receiver(sender: Any = None, **kwargs: Any) -> None:
            record(name, sender=type(sender).__name__ if not isinstance(sender, str)
                   else sender, kwargs=sorted(k for k in kwargs if k != "signal"),
                   **{k: kwargs[k] for k in ("sig", "how", "exitcode") if k in kwargs})
        return receiver

    for sig in (signals.celeryd_init, signals.worker_init, signals.celeryd_after_setup,
                signals.worker_ready, signals.heartbeat_sent, signals.worker_shutting_down,
                signals.worker_shutdown, signals.worker_process_init,
                signals.worker_process_shutdown, signals.import_modules,
                signals.beat_init, signals.beat_embedded_init):
        connect(sig, recorder(sig.name))

    with running_worker(app, pool=pool, concurrency=2, name="sigs@host", beat=True):
        if pool == "processes":
            wait_until(lambda: len(record.events(kind="worker_process_init")) == 2,
                       message="both children started")
        wait_until(lambda: record.events(kind="heartbeat_sent"), message="a heartbeat")
    order = [k for k in record.kinds() if k not in ("heartbeat_sent", "worker_process_init",
                                                      "worker_process_shutdown")]
    assert order == ["celeryd_init", "worker_init", "import_modules", "celeryd_after_setup",
                     "beat_init", "beat_embedded_init", "worker_ready",
                     "worker_shutting_down", "worker_shutdown"]
    [init] = record.events(kind="celeryd_init")
    assert init["sender"] == "sigs@host" and init["kwargs"] == ["conf", "instance", "options"]
    assert record.events(kind="celeryd_after_setup")[0]["kwargs"] == ["conf", "instance"]
    assert record.events(kind="worker_ready")[0]["sender"] == "Worker"
    assert record.events(kind="beat_init")[0]["sender"] == "Scheduler"
    assert record.events(kind="heartbeat_sent")[0]["sender"] == "Heartbeat"
    [down] = record.events(kind="worker_shutting_down")
    assert (down["sender"], down["sig"], down["how"], down["exitcode"]) == \
        ("sigs@host", None, "Warm", 0)
    assert record.events(kind="import_modules")[0]["sender"] == "App"
    children = record.events(kind="worker_process_init")
    ended = record.events(kind="worker_process_shutdown")
    if pool == "processes":
        assert len(children) == 2 and os.getpid() not in {c["pid"] for c in children}
        assert {c["pid"] for c in ended} == {c["pid"] for c in children}
        assert all(e["kwargs"] == ["exitcode", "pid"] for e in ended)
    else:
        assert children == ended == []


def test_celeryd_init_may_still_change_the_settings_the_worker_reads(
        app: App, connect: Connect) -> None:
    def configure(sender: Any = None, conf: Any = None, **kwargs: Any) -> None:
        if sender == "special@host":
            conf.worker_concurrency = 3

    connect(signals.celeryd_init, configure)
    assert Worker(app, name="special@host", install_signal_handlers=False).concurrency == 3


def test_pgqueue_beat_sends_beat_init(app: App, connect: Connect) -> None:
    seen: list[Any] = []
    connect(signals.beat_init, lambda sender=None, **kw: seen.append(sender))
    connect(signals.beat_embedded_init, lambda sender=None, **kw: seen.append("embedded"))
    beat = Beat(app, install_signal_handlers=False)
    thread = threading.Thread(target=beat.run, daemon=True)
    thread.start()
    try:
        assert beat.started.wait(20)
    finally:
        beat.stop()
        thread.join(20)
    assert seen == [beat]
