"""Chains and links: each step gets the previous result, in the transaction that
records it; a failed step stops its chain and the later steps' results say why."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from pgqueue import App, chain, signature, states
from pgqueue.exceptions import TaskRevokedError
from tests.conftest import running_worker, wait_until
from tests.integration.canvas.conftest import CanvasTasks

GET = 30  # seconds: generous on a loaded machine


def test_pipe_makes_a_chain_not_a_dict_merge(tasks: CanvasTasks) -> None:
    workflow = tasks.add.s(2, 2) | tasks.mul.s(8)
    assert isinstance(workflow, chain)
    assert [s.task for s in workflow.tasks] == ["add", "mul"]


def test_chain_passes_each_result_on(
        app: App, tasks: CanvasTasks, db: psycopg.Connection[Any]) -> None:
    with running_worker(app):
        result = (tasks.add.s(2, 2) | tasks.mul.s(8) | tasks.add.s(1)).apply_async()
        assert result.get(timeout=GET) == 33
        assert result.parent.get(timeout=GET) == 32
        assert result.parent.parent.get(timeout=GET) == 4
        first = result.parent.parent
    rows = db.execute("SELECT id::text, parent_id::text, root_id::text FROM results "
                      "ORDER BY finished_at").fetchall()
    assert len(rows) == 3
    assert all(root == first.id for _, _, root in rows)
    # each step's parent is the step before it, as Celery records it
    assert rows[1][1] == rows[0][0] and rows[2][1] == rows[1][0]
    assert db.execute("SELECT count(*) FROM canvas_steps").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM canvas_edges").fetchone() == (0,)


def test_immutable_step_ignores_the_result(app: App, tasks: CanvasTasks) -> None:
    with running_worker(app):
        result = chain(tasks.add.s(2, 2), tasks.mul.si(3, 3)).apply_async()
        assert result.get(timeout=GET) == 9


def test_partial_args_go_first(app: App, tasks: CanvasTasks) -> None:
    with running_worker(app):
        assert tasks.add.s(2).apply_async((8,)).get(timeout=GET) == 10
        assert chain(tasks.add.s(1), tasks.mul.s(10)).apply_async((4,)).get(timeout=GET) == 50


def test_failed_step_stops_the_chain(
        app: App, tasks: CanvasTasks, db: psycopg.Connection[Any]) -> None:
    with running_worker(app):
        result = (tasks.add.s(1, 1) | tasks.boom.s() | tasks.add.s(1) | tasks.mul.s(2))\
            .apply_async()
        with pytest.raises(ZeroDivisionError):
            result.get(timeout=GET)
        assert result.state == states.FAILURE
        assert result.parent.state == states.FAILURE
        rows = db.execute("SELECT task, error FROM results WHERE task IN ('add', 'mul') "
                          "AND error IS NOT NULL").fetchall()
    assert len(rows) == 2
    assert all("stopped: boom" in error for _, error in rows)
    # the later steps never ran
    assert db.execute("SELECT count(*) FROM results WHERE worker IS NOT NULL").fetchone() \
        == (2,)
    assert db.execute("SELECT count(*) FROM canvas_steps").fetchone() == (0,)


def test_link_and_link_error_on_apply_async(app: App, tasks: CanvasTasks) -> None:
    @app.task(name="on_error")
    def on_error(request: Any, exc: BaseException, traceback: str | None) -> list[Any]:
        return [request.id, request.task, type(exc).__name__, str(exc),
                "ZeroDivisionError" in (traceback or "")]

    @app.task(name="old_style")
    def old_style(task_id: str) -> str:
        return task_id

    with running_worker(app):
        ok = tasks.add.apply_async((2, 3), link=tasks.mul.s(10))
        assert ok.get(timeout=GET) == 5
        child = wait_until(lambda: ok.children, timeout=GET, message="link sent")[0]
        assert child.get(timeout=GET) == 50

        bad = tasks.boom.apply_async(link=tasks.mul.s(10),
                                     link_error=[on_error.s(), old_style.s()])
        with pytest.raises(ZeroDivisionError):
            bad.get(timeout=GET)
        children = wait_until(lambda: len(bad.children) == 3 and bad.children,
                              timeout=GET, message="callbacks")
        by_task = {c.name: c for c in children}
        assert by_task["on_error"].get(timeout=GET) == [bad.id, "boom", "ZeroDivisionError",
                                                        "boom", True]
        assert by_task["old_style"].get(timeout=GET) == bad.id
        # the success callback of a failed job never runs: its result says why
        with pytest.raises(ZeroDivisionError):
            by_task["mul"].get(timeout=GET)


def test_link_to_an_unknown_task_fails_clearly(app: App, tasks: CanvasTasks) -> None:
    with running_worker(app):
        first = tasks.add.apply_async((1, 2), link=signature("no.such.task", app=app))
        assert first.get(timeout=GET) == 3
        child = wait_until(lambda: first.children, timeout=GET, message="link")[0]
        with pytest.raises(Exception, match="never registered"):
            child.get(timeout=GET)
        assert child.state == states.FAILURE


def test_revoking_a_waiting_step_revokes_the_rest(app: App, tasks: CanvasTasks) -> None:
    result = (tasks.add.s(1, 1) | tasks.add.s(1) | tasks.add.s(1)).apply_async()
    result.parent.revoke()
    with running_worker(app):
        assert result.parent.parent.get(timeout=GET) == 2
        with pytest.raises(TaskRevokedError):
            result.get(timeout=GET)
        assert result.state == states.REVOKED


def test_stale_finish_does_not_advance(
        app: App, tasks: CanvasTasks, db: psycopg.Connection[Any]) -> None:
    """A finish fenced out (the job is not this worker's attempt) moves nothing, and
    nothing follows from it."""
    result = (tasks.add.s(1, 1) | tasks.add.s(1)).apply_async()
    first = result.parent
    db.execute("UPDATE jobs SET state = 'started', worker = 'w1', attempt = 1 "
               "WHERE id = %s", (first.id,))
    queries = app.queries
    outcome = json.dumps([{"id": first.id, "attempt": 1, "state": "SUCCESS", "result": 2}])
    rows = db.execute(queries["job_finish"], {"outcomes": outcome, "ids": [first.id],
                                              "worker": "w-stale", **queries.channels()})
    assert rows.fetchall() == []
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM canvas_steps").fetchone() == (1,)
    rows = db.execute(queries["job_finish"], {"outcomes": outcome, "ids": [first.id],
                                              "worker": "w1", **queries.channels()})
    assert len(rows.fetchall()) == 1
    assert db.execute("SELECT args FROM jobs").fetchone() == ([2, 1],)
    assert db.execute("SELECT count(*) FROM canvas_steps").fetchone() == (0,)
    # the same finish again (a retry after a lost connection whose commit did land)
    rows = db.execute(queries["job_finish"], {"outcomes": outcome, "ids": [first.id],
                                              "worker": "w1", **queries.channels()})
    assert rows.fetchall() == []
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (1,)


def test_revoke_workflow_revokes_every_unstarted_step(tasks: CanvasTasks,
                                                      db: psycopg.Connection[Any]) -> None:
    result = chain(tasks.add.s(1, 1), tasks.add.s(1), tasks.mul.s(2)).apply_async()
    other = tasks.add.delay(5, 5)
    revoked = result.revoke_workflow()
    assert len(revoked) == 3
    assert {r[0] for r in db.execute("SELECT state FROM results").fetchall()} == {"REVOKED"}
    assert db.execute("SELECT count(*) FROM canvas_steps").fetchone() == (0,)
    assert db.execute("SELECT id::text FROM jobs").fetchall() == [(other.id,)]
    with pytest.raises(TaskRevokedError):
        result.get(timeout=GET)


def test_a_retried_step_retries_alone(
        app: App, tasks: CanvasTasks, db: psycopg.Connection[Any]) -> None:
    runs: list[int] = []

    @app.task(name="flaky", bind=True, max_retries=3, default_retry_delay=0)
    def flaky(self: Any, x: int) -> int:
        runs.append(x)
        if len(runs) < 3:
            raise self.retry(countdown=0)
        return x * 10

    with running_worker(app):
        result = chain(tasks.add.s(1, 1), flaky.s(), tasks.add.s(1)).apply_async()
        assert result.get(timeout=GET) == 21
    assert runs == [2, 2, 2]
    # the step before ran once, the step after once
    assert db.execute("SELECT task, attempt FROM results ORDER BY finished_at").fetchall() \
        == [("add", 1), ("flaky", 3), ("add", 1)]


def test_steps_may_have_task_ids_that_are_not_uuids(app: App, tasks: CanvasTasks) -> None:
    result = chain(tasks.add.s(1, 1).set(task_id="first-step"),
                   tasks.add.s(1).set(task_id="order-42")).apply_async()
    assert (result.id, result.parent.id) == ("order-42", "first-step")
    with running_worker(app):
        assert result.get(timeout=GET) == 3
        assert app.AsyncResult("first-step").get(timeout=GET) == 2
    assert [c.id for c in app.AsyncResult("first-step").children] == \
        [app.AsyncResult("order-42").row_id]
