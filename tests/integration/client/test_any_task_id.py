"""Any string is a task id, as in Celery: stored, readable in SQL as given, usable
everywhere an id is taken; an id no job has is PENDING, never an exception."""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
import pytest

from pgqueue import App, Task, limits, states
from pgqueue.exceptions import PgQueueError
from pgqueue.result import AsyncResult
from tests.conftest import running_worker, wait_until


@pytest.fixture
def tasks(app: App) -> dict[str, Any]:
    @app.task(name="ids.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(bind=True, name="ids.whoami")
    def whoami(self: Task) -> str | None:
        return self.request.id

    @app.task(bind=True, name="ids.progress")
    def progress(self: Task, other: str) -> str:
        self.update_state(task_id=other, state="PROGRESS", meta={"by": "another job"})
        return "ok"

    return {"add": add, "whoami": whoami, "progress": progress}


def one(db: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = db.execute(query, params).fetchone()
    assert row is not None, query
    return row


# -- a round trip -------------------------------------------------------------------------

def test_a_string_id_runs_and_its_result_is_read_by_that_string(
    app: App, db: psycopg.Connection[Any], tasks: dict[str, Any]
) -> None:
    sent = tasks["add"].apply_async((2, 3), task_id="order-42")
    assert sent.id == "order-42" and str(sent) == "order-42"
    # live: the row's id is the uuid the string names, the string is kept as given
    row_id, task_id = one(db, "SELECT id::text, task_id FROM jobs")
    assert (row_id, task_id) == (limits.row_id("order-42"), "order-42")
    assert uuid.UUID(row_id) == uuid.uuid5(limits.TASK_ID_NAMESPACE, "order-42")
    assert one(db, "SELECT task_id, state FROM all_jobs") == ("order-42", "PENDING")
    assert AsyncResult("order-42", app=app).state == states.PENDING
    with running_worker(app):
        assert app.AsyncResult("order-42").get(timeout=30) == 5
    assert one(db, "SELECT task_id, state, result FROM results") == ("order-42", "SUCCESS", 5)
    assert one(db, "SELECT task_id, state FROM all_jobs WHERE task_id = 'order-42'") == (
        "order-42", "SUCCESS")
    result = tasks["add"].AsyncResult("order-42")
    assert (result.id, result.state, result.result) == ("order-42", states.SUCCESS, 5)
    assert result.read().state == states.SUCCESS and result.ready()


def test_a_string_id_is_found_by_index_in_plain_sql(
    app: App, db: psycopg.Connection[Any], tasks: dict[str, Any]
) -> None:
    tasks["add"].apply_async((1, 1), task_id="order-42")
    db.execute("SET enable_seqscan = off")  # an empty table: ask whether an index can serve
    plan = "\n".join(r[0] for r in db.execute(
        "EXPLAIN SELECT * FROM jobs WHERE task_id = 'order-42'").fetchall())
    assert "jobs_task_id_idx" in plan
    plan = "\n".join(r[0] for r in db.execute(
        "EXPLAIN SELECT * FROM results WHERE task_id = 'order-42'").fetchall())
    assert "results_task_id_idx" in plan


def test_a_generated_id_stays_a_plain_uuid(
    app: App, db: psycopg.Connection[Any], tasks: dict[str, Any]
) -> None:
    sent = tasks["add"].delay(1, 2)
    assert one(db, "SELECT id::text, task_id FROM jobs") == (sent.id, None)
    assert one(db, "SELECT task_id FROM all_jobs") == (sent.id,)


def test_spellings_of_a_uuid_name_the_same_row_and_are_kept_as_given(
    app: App, db: psycopg.Connection[Any], tasks: dict[str, Any]
) -> None:
    canonical = "0190f5c2-52a1-7d6e-8b1f-3c2d4e5f6a7b"
    sent = tasks["add"].apply_async((1, 2), task_id=canonical.upper())
    assert sent.id == canonical.upper()
    assert one(db, "SELECT id::text, task_id FROM jobs") == (canonical, canonical.upper())
    for spelling in (canonical, canonical.upper(), canonical.replace("-", ""),
                     "{" + canonical + "}"):
        assert app.AsyncResult(spelling).state == states.PENDING
        assert app.AsyncResult(spelling).name == "ids.add"  # the row was read
    with pytest.raises(PgQueueError, match="already exists"):
        tasks["add"].apply_async((1, 2), task_id=canonical)


def test_the_task_sees_the_id_as_sent_and_update_state_takes_it(
    app: App, db: psycopg.Connection[Any], tasks: dict[str, Any]
) -> None:
    """Inside the worker ``request.id`` is the string sent, as in Celery; hooks and
    signals get it too; update_state reaches a job by it, this one or another."""
    from pgqueue import signals

    seen: list[Any] = []

    def prerun(task_id: str, **_: Any) -> None:
        seen.append(task_id)

    signals.task_prerun.connect(prerun)
    try:
        target = tasks["add"].apply_async((1, 1), task_id="target-job", countdown=3600)
        me = tasks["whoami"].apply_async(task_id="who-am-i")
        with running_worker(app):
            assert me.get(timeout=30) == "who-am-i"
            bad = tasks["progress"].apply_async(("target-job",), task_id="progress-job")
            with pytest.raises(ValueError, match="that job is not running"):
                bad.get(timeout=30)
            # its own id, as sent: the fenced write of the running job, not another's
            own = tasks["progress"].apply_async(("own-progress",), task_id="own-progress")
            assert own.get(timeout=30) == "ok"
    finally:
        signals.task_prerun.disconnect(prerun)
    assert seen == ["who-am-i", "progress-job", "own-progress"]
    assert target.state == states.PENDING


def test_a_task_applied_eagerly_under_a_string_id(app: App, tasks: dict[str, Any]) -> None:
    result = tasks["whoami"].apply(task_id="eager-one")
    assert (result.id, result.result) == ("eager-one", "eager-one")
    assert tasks["progress"].apply(("eager-two",), task_id="eager-two").result == "ok"


def test_an_abortable_task_sent_under_a_string_id_sees_the_abort(app: App) -> None:
    from pgqueue.contrib.abortable import AbortableTask

    @app.task(bind=True, base=AbortableTask, name="ids.wait_for_abort")
    def wait_for_abort(self: Task) -> str:
        self.update_state(state="WAITING")
        deadline = time.monotonic() + 60
        while not self.is_aborted():
            assert time.monotonic() < deadline, "no abort seen"
            time.sleep(0.02)
        return "saw the abort"

    wait_for_abort.apply_async(task_id="abort-me")
    result = wait_for_abort.AsyncResult("abort-me")
    with running_worker(app):
        wait_until(lambda: result.state == "WAITING", timeout=30, message="the task to run")
        result.abort()
        wait_until(lambda: result.ready(), timeout=30, message="the task to end")
    assert result.state == states.REVOKED and result.is_aborted()


# -- duplicates ----------------------------------------------------------------------------

def test_a_second_live_job_with_the_same_string_is_the_duplicate_error_of_a_uuid(
    app: App, db: psycopg.Connection[Any], tasks: dict[str, Any]
) -> None:
    tasks["add"].apply_async((1, 2), task_id="order-42")
    with pytest.raises(PgQueueError, match="already exists and has not finished.*order-42"):
        tasks["add"].apply_async((1, 2), task_id="order-42")
    with pytest.raises(PgQueueError, match="already exists"):
        app.send_task("ids.add", (1, 2), task_id="order-42", unique_key="k")
    assert one(db, "SELECT count(*) FROM jobs") == (1,)
    # once it has finished, the id may be sent again, as a UUID may (a rerun)
    with running_worker(app):
        assert app.AsyncResult("order-42").get(timeout=30) == 3
        again = tasks["add"].apply_async((5, 5), task_id="order-42")
        assert again.get(timeout=30) == 10
    assert one(db, "SELECT task_id, result FROM results") == ("order-42", 10)


def test_a_unique_key_holder_is_handed_back_by_its_string(
    app: App, tasks: dict[str, Any]
) -> None:
    first = tasks["add"].apply_async((1, 2), task_id="holder", unique_key="once")
    second = tasks["add"].apply_async((1, 2), task_id="other", unique_key="once")
    assert second.duplicate and second.id == "holder" == first.id


# -- revoke, abort, forget -----------------------------------------------------------------

def test_revoke_by_string(app: App, db: psycopg.Connection[Any], tasks: dict[str, Any]) -> None:
    tasks["add"].apply_async((1, 2), task_id="order-42", countdown=3600)
    tasks["add"].apply_async((1, 2), task_id="order-43", countdown=3600)
    assert app.control.revoke(["order-42", "unknown", ""]) == ["order-42"]
    assert app.AsyncResult("order-42").state == states.REVOKED
    app.AsyncResult("order-43").revoke()
    assert app.AsyncResult("order-43").state == states.REVOKED
    assert sorted(r[0] for r in db.execute("SELECT task_id FROM results")) == [
        "order-42", "order-43"]
    app.AsyncResult("order-42").forget()
    assert app.AsyncResult("order-42").state == states.PENDING
    assert app.control.revoke("order-42", terminate=True) == []


def test_terminate_by_string_stops_the_running_job(app: App) -> None:
    @app.task(bind=True, name="ids.spin")
    def spin(self: Task) -> None:
        self.update_state(state="SPINNING")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # a bytecode loop: the thread pool interrupts it
            pass

    spin.apply_async(task_id="terminate-me")
    result = app.AsyncResult("terminate-me")
    with running_worker(app):
        wait_until(lambda: result.state == "SPINNING", timeout=30, message="the job to run")
        assert app.control.revoke("terminate-me", terminate=True) == []  # it had started
        wait_until(lambda: result.ready(), timeout=30, message="the job to be terminated")
    assert result.state == states.REVOKED


def test_abort_by_string(app: App) -> None:
    from pgqueue.contrib.abortable import AbortableTask

    @app.task(bind=True, base=AbortableTask, name="ids.abortable")
    def abortable(self: Task) -> None:
        return None

    abortable.apply_async(task_id="to-abort", countdown=3600)
    result = abortable.AsyncResult("to-abort")
    result.abort()
    assert result.state == states.REVOKED and result.is_aborted()
    abortable.AsyncResult("").abort()  # no job can have it: nothing to do


def test_parent_root_and_group_ids_may_be_strings(
    app: App, db: psycopg.Connection[Any], tasks: dict[str, Any]
) -> None:
    tasks["add"].apply_async((1, 2), parent_id="order-42", root_id="order-1",
                             group_id=str(uuid.UUID(int=7)).upper())
    assert one(db, "SELECT parent_id::text, root_id::text, group_id::text FROM jobs") == (
        limits.row_id("order-42"), limits.row_id("order-1"), str(uuid.UUID(int=7)))


def test_apply_many_with_string_ids_is_refused_like_uuids(tasks: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="task_id cannot be shared"):
        tasks["add"].apply_many([(1, 2), (3, 4)], task_id="order-42")


def test_string_ids_in_a_callers_transaction(
    app: App, pg_dsn: str, schema: str, tasks: dict[str, Any]
) -> None:
    with psycopg.connect(pg_dsn) as conn:
        tasks["add"].apply_async((1, 2), task_id="in-transaction", connection=conn)
        with pytest.raises(PgQueueError, match="already exists"):
            tasks["add"].apply_async((1, 2), task_id="in-transaction", connection=conn)
    assert app.AsyncResult("in-transaction").state == states.PENDING


# -- hostile ids ---------------------------------------------------------------------------

UNKNOWN = ["no-such-job", "", " ", "x" * 501, "x" * 100_000, "a\x00b", "\udc80", "ünïcødé ✓",
           "'; DROP TABLE jobs; --", "0190f5c2-52a1-7d6e-8b1f-3c2d4e5f6a7b", "{}", "null",
           "\n", "%(id)s", "01900000-0000-7000-8000-00000000000G"]


@pytest.mark.parametrize("task_id", UNKNOWN, ids=[repr(i)[:20] for i in UNKNOWN])
def test_an_unknown_id_is_pending_everywhere(
    app: App, db: psycopg.Connection[Any], tasks: dict[str, Any], task_id: str
) -> None:
    result = app.AsyncResult(task_id)
    assert result.id == task_id
    assert (result.state, result.result, result.ready(), result.info) == (
        states.PENDING, None, False, None)
    assert result.read().state == states.PENDING
    assert result._get_task_meta()["status"] == states.PENDING
    assert tasks["add"].AsyncResult(task_id).status == states.PENDING
    from pgqueue.exceptions import TimeoutError

    with pytest.raises(TimeoutError):
        result.get(timeout=0.05)
    result.forget()
    assert app.control.revoke(task_id) == []
    assert one(db, "SELECT count(*) FROM jobs") == (0,)


@pytest.mark.parametrize("task_id", ["", "x" * 501, "a\x00b", "\udc80", 42, 4.5])
def test_an_id_no_job_can_have_is_refused_at_send_with_one_line(
    app: App, db: psycopg.Connection[Any], tasks: dict[str, Any], task_id: Any
) -> None:
    for send in (lambda: tasks["add"].apply_async((1, 2), task_id=task_id),
                 lambda: app.send_task("ids.add", (1, 2), task_id=task_id)):
        with pytest.raises(ValueError) as error:
            send()
        message = str(error.value)
        assert "\n" not in message and len(message) < 300
        assert "task_id must be a string of 1 to 500 characters without NUL" in message
    assert one(db, "SELECT count(*) FROM jobs") == (0,)


@pytest.mark.parametrize("task_id", ["ünïcødé ✓ 注文", "x" * 500, "with\nnewline\ttab",
                                     "'; DROP TABLE jobs; --", " ", "a" * 32, "{}"])
def test_odd_but_valid_ids_round_trip(
    app: App, db: psycopg.Connection[Any], tasks: dict[str, Any], task_id: str
) -> None:
    sent = tasks["add"].apply_async((1, 2), task_id=task_id)
    assert sent.id == task_id
    assert one(db, "SELECT task_id FROM all_jobs") == (task_id,)
    with running_worker(app):
        assert app.AsyncResult(task_id).get(timeout=30) == 3
    assert one(db, "SELECT task_id FROM results") == (task_id,)
    wait_until(lambda: app.AsyncResult(task_id).state == states.SUCCESS)
