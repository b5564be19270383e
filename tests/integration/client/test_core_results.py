"""Results: AsyncResult's states, waiting on a notification, errors, forget and revoke."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from pgqueue import App, AsyncResult, Task, TaskRevokedError
from pgqueue.db.connection import Dedicated
from pgqueue.exceptions import TimeoutError as ResultTimeout
from pgqueue.services.pruner import Pruner
from tests.conftest import running_worker, wait_until


class PaymentDeclined(Exception):
    """A user's exception type: get() must raise it again, not a wrapper."""

    def __init__(self, amount: int, reason: str) -> None:
        super().__init__(amount, reason)


def rows(db: psycopg.Connection[Any], query: str, *params: Any) -> list[tuple[Any, ...]]:
    return db.execute(query, list(params)).fetchall()


@pytest.fixture
def tasks(app: App) -> dict[str, Any]:
    @app.task(name="r.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="r.decline")
    def decline(amount: int) -> None:
        raise PaymentDeclined(amount, "insufficient funds")

    @app.task(name="r.stamp")
    def stamp() -> float:
        return time.monotonic()

    return {"add": add, "decline": decline, "stamp": stamp}


def test_get_wakes_on_the_completion_notification(app: App, tasks: dict[str, Any]) -> None:
    with running_worker(app):
        result = tasks["stamp"].apply_async(countdown=1)
        assert result.state == "PENDING"  # so get() has to wait for it
        asked = time.monotonic()
        finished_at = result.get(timeout=20, interval=30)  # trusts 30 s of silence
        returned = time.monotonic()
    # Well under the 30 s interval: the finishing worker's NOTIFY woke the waiter.
    assert returned - asked < 5
    assert returned - finished_at < 2  # from the task's return to get()'s return


def test_many_waiters_wake_together(app: App, tasks: dict[str, Any]) -> None:
    with running_worker(app, concurrency=4):
        results = tasks["add"].apply_many([((i, i), {}) for i in range(50)], countdown=0.5)
        values: list[int] = []
        threads = [threading.Thread(target=lambda r=r: values.append(
            r.get(timeout=20, interval=30))) for r in results]
        asked = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(25)
        assert time.monotonic() - asked < 10
    assert sorted(values) == sorted(2 * i for i in range(50))


def test_success_fields(app: App, tasks: dict[str, Any]) -> None:
    with running_worker(app):
        result = tasks["add"].delay(2, 3)
        assert result.get(timeout=10) == 5
    again = app.AsyncResult(result.id)
    assert isinstance(again, AsyncResult) and again == result
    assert (again.state, again.status, again.result, again.info) == (
        "SUCCESS", "SUCCESS", 5, 5)
    assert again.ready() and again.successful() and not again.failed()
    assert again.traceback is None
    assert isinstance(again.date_done, datetime) and again.date_done.tzinfo is not None
    assert abs(datetime.now(timezone.utc) - again.date_done) < timedelta(seconds=30)
    assert (again.name, again.args, again.kwargs) == ("r.add", [2, 3], {})
    assert AsyncResult(result.id, app=app).get() == 5


def test_failure_propagates_the_task_exception_type(app: App, tasks: dict[str, Any]) -> None:
    with running_worker(app):
        result = tasks["decline"].delay(30)
        with pytest.raises(PaymentDeclined) as error:
            result.get(timeout=10)
    assert error.value.args == (30, "insufficient funds")
    assert result.state == "FAILURE" and result.failed() and result.ready()
    assert not result.successful()


def test_failure_without_propagation(app: App, tasks: dict[str, Any]) -> None:
    with running_worker(app):
        result = tasks["decline"].delay(5)
        error = result.get(timeout=10, propagate=False)
    assert isinstance(error, PaymentDeclined) and error.args == (5, "insufficient funds")
    assert isinstance(result.info, PaymentDeclined)
    traceback = result.traceback
    assert traceback is not None
    assert "Traceback (most recent call last)" in traceback
    assert "raise PaymentDeclined(amount" in traceback
    assert "PaymentDeclined: (5, 'insufficient funds')" in traceback
    assert result.date_done is not None


def test_builtin_exception_propagates(app: App) -> None:
    @app.task
    def divide(x: int, y: int) -> float:
        return x / y

    with running_worker(app), pytest.raises(ZeroDivisionError):
        divide.delay(1, 0).get(timeout=10)


def test_exception_of_a_module_not_imported_here_is_a_clear_wrapper(
    app: App, db: psycopg.Connection[Any]
) -> None:
    from pgqueue.exceptions import TaskError

    result = app.send_task("x.y")
    db.execute("""INSERT INTO results (id, queue, task, state, result, error, created_at)
                  VALUES (%s, 'default', 'x.y', 'FAILURE',
                          '{"exc_type": "Boom", "exc_module": "not.imported.mod",
                            "exc_message": ["bang"]}', 'Boom: bang', now())""", [result.id])
    db.execute("DELETE FROM jobs WHERE id = %s", [result.id])
    with pytest.raises(TaskError, match="not.imported.mod.Boom"):
        result.get(timeout=1)


def test_get_times_out(app: App, tasks: dict[str, Any]) -> None:
    result = tasks["add"].delay(1, 1)  # no worker
    started = time.monotonic()
    with pytest.raises(ResultTimeout, match="did not finish within 0.3s"):
        result.get(timeout=0.3)
    assert time.monotonic() - started < 5


def test_forget_deletes_the_result(app: App, db: psycopg.Connection[Any],
                                   tasks: dict[str, Any]) -> None:
    with running_worker(app):
        result = tasks["add"].delay(1, 1)
        assert result.get(timeout=10) == 2
    result.forget()
    assert rows(db, "SELECT count(*) FROM results WHERE id = %s", result.id) == [(0,)]
    assert result.state == "PENDING"
    assert app.AsyncResult(result.id).result is None


def test_revoke_a_queued_job_and_it_never_runs(app: App, db: psycopg.Connection[Any]) -> None:
    ran: list[str] = []

    @app.task
    def record(name: str) -> str:
        ran.append(name)
        return name

    doomed = record.delay("doomed")
    scheduled = record.apply_async(("scheduled",), countdown=0.5)
    doomed.revoke()
    app.control.revoke([scheduled.id])
    assert doomed.state == scheduled.state == "REVOKED"
    with running_worker(app):
        assert record.delay("after").get(timeout=10) == "after"
        wait_until(lambda: rows(db, "SELECT count(*) FROM jobs") == [(0,)], timeout=20,
                   message="nothing left to run")
    assert ran == ["after"]
    with pytest.raises(TaskRevokedError):
        doomed.get(timeout=1)
    assert isinstance(doomed.get(propagate=False), TaskRevokedError)


def test_revoking_a_finished_job_changes_nothing(app: App, tasks: dict[str, Any]) -> None:
    with running_worker(app):
        result = tasks["add"].delay(1, 2)
        assert result.get(timeout=10) == 3
    assert app.control.revoke(result.id) == []
    assert app.AsyncResult(result.id).state == "SUCCESS"


def test_get_inside_a_task_raises(app: App, tasks: dict[str, Any]) -> None:
    @app.task
    def nested() -> int:
        return int(tasks["add"].delay(1, 1).get(timeout=5))

    never = r"Never call result.get\(\) within a task"
    with running_worker(app), pytest.raises(RuntimeError, match=never):
        nested.delay().get(timeout=10)


def test_custom_state_with_meta(app: App) -> None:
    release = threading.Event()

    @app.task(bind=True)
    def custom(self: Task) -> str:
        self.update_state(state="WAITING_FOR_APPROVAL", meta={"approver": "ops"})
        assert release.wait(10)
        return "approved"

    with running_worker(app):
        result = custom.delay()
        wait_until(lambda: result.state == "WAITING_FOR_APPROVAL", message="custom state")
        assert result.info == {"approver": "ops"}
        release.set()
        assert result.get(timeout=10) == "approved"


def test_unknown_id_is_pending(app: App) -> None:
    result = app.AsyncResult("01900000-0000-7000-8000-000000000000")
    assert result.state == "PENDING" and result.result is None and not result.ready()


def test_results_expire_after_result_expires(app: App, db: psycopg.Connection[Any]) -> None:
    assert app.conf.seconds("result_expires") == 86400
    old, recent = (r.id for r in app.send_many("r.none", [(), ()]))
    assert sorted(app.control.revoke([old, recent])) == sorted([old, recent])
    db.execute("UPDATE results SET finished_at = now() - interval '25 hours' WHERE id = %s",
               [old])
    connection = Dedicated(app.dsn, app.schema, "test")
    try:
        Pruner(app.queries, app.conf.seconds("result_expires"), worker_ttl=60).run_once(
            connection)
    finally:
        connection.close()
    assert rows(db, "SELECT id::text FROM results") == [(recent,)]


def test_all_jobs_view_reads_every_job_in_celery_states(
    app: App, db: psycopg.Connection[Any], tasks: dict[str, Any]
) -> None:
    release = threading.Event()

    @app.task
    def block() -> None:
        assert release.wait(10)

    @app.task(bind=True)
    def later(self: Task) -> None:
        raise self.retry(exc=OSError("not yet"), countdown=60)

    queued = app.send_task("r.add", (1, 1), queue="parked")
    scheduled = app.send_task("r.add", (1, 1), countdown=60)
    revoked = app.send_task("r.add", (1, 1), queue="parked")
    revoked.revoke()
    with running_worker(app, concurrency=2):
        done = app.send_task("r.add", (1, 2))
        failed = app.send_task("r.decline", (1,))
        retrying = later.delay()
        running = block.delay()
        wait_until(lambda: rows(db, "SELECT state FROM jobs WHERE id = %s", running.id) == [
            ("started",)], message="the blocking job to start")
        done.get(timeout=10)
        failed.get(timeout=10, propagate=False)
        wait_until(lambda: rows(db, "SELECT state FROM jobs WHERE id = %s", retrying.id) == [
            ("retry",)], message="the retry")
        states = dict(rows(db, "SELECT id::text, state FROM all_jobs"))
        release.set()
    assert states == {
        queued.id: "PENDING", scheduled.id: "PENDING", revoked.id: "REVOKED",
        done.id: "SUCCESS", failed.id: "FAILURE", retrying.id: "RETRY",
        running.id: "STARTED",
    }
    assert rows(db, "SELECT result, error FROM all_jobs WHERE id = %s", done.id) == [(3, None)]
    assert rows(db, "SELECT error FROM all_jobs WHERE id = %s", retrying.id) == [
        ("OSError: not yet",)]


def test_read_gives_one_consistent_reading(app: App) -> None:
    @app.task
    def answer() -> int:
        return 42

    with running_worker(app):
        result = answer.delay()
        result.get(timeout=10)
    reading = result.read()
    assert (reading.state, reading.result, reading.ready) == ("SUCCESS", 42, True)
    assert result._get_task_meta()["status"] == "SUCCESS"
