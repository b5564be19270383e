"""Workflow steps whose predecessor left without an outcome of its own: a purged job, a
member's result deleted before its chord's body ran, a starter job run again after its
worker died. None of them leaves a step waiting for ever, passes None silently, or sends
a workflow twice."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import App, ChordError, chain, chord, group, states
from pgqueue.client.periodic import code_entries
from pgqueue.db.connection import Dedicated
from pgqueue.exceptions import DuplicateJob, TaskRevokedError
from pgqueue.services.rescuer import Rescuer
from tests.acceptance.procs import WorkerProcess, workers
from tests.conftest import running_worker, wait_until
from tests.integration.canvas.helpers import make_tasks, waiting

GET = 60
HERE = Path(__file__).resolve().parent


def test_purge_ends_what_waits_for_the_purged_jobs(
        app: App, db: psycopg.Connection[Any]) -> None:
    t = make_tasks(app)
    chained = chain(t["add"].s(1, 1), t["add"].s(1), t["add"].s(1)).apply_async()
    body = chord([t["add"].s(1, 1).set(queue="other"), t["add"].s(2, 2)],
                 t["tsum"].s()).apply_async()
    linked = t["add"].apply_async((1, 1), link_error=t["note"].si())
    plain = t["add"].delay(5, 5)
    assert waiting(db) == (4, 5)

    assert app.control.purge(["default"]) == 4  # the member in "other" stays
    # the steps after a purged job end at once, with the reason; nothing waits any more
    # (the chord's other member keeps its edge until it ends, as after any failure)
    assert waiting(db) == (0, 1)
    for stopped in (chained, chained.parent):
        assert stopped.state == states.REVOKED
        with pytest.raises(TaskRevokedError):
            stopped.get(timeout=GET)
    first = chained.parent.parent
    assert first.state == states.REVOKED and "purged" in str(first.info)
    with pytest.raises(ChordError, match=body.parent.results[1].id):
        body.get(timeout=GET)
    assert "purged" in str(body.info)
    # a purged job nothing waits for leaves no result, as before
    assert db.execute("SELECT count(*) FROM results WHERE id = %s",
                      (plain.id,)).fetchone() == (0,)
    # the link_error of a purged job runs, as for a revoked one; the surviving member
    # of the failed chord runs alone
    with running_worker(app, queues=["default", "other"]):
        errback = next(c for c in linked.children if c.id != linked.id)
        assert errback.get(timeout=GET) == "errback ran"
        assert body.parent.results[0].get(timeout=GET) == 2
    assert db.execute("SELECT count(*) FROM results WHERE task = 'tsum'").fetchone() == (1,)
    assert waiting(db) == (0, 0)


def test_purge_of_queues_without_workflows_and_of_nothing(
        app: App, db: psycopg.Connection[Any]) -> None:
    t = make_tasks(app)
    t["add"].apply_many([(1, 1)] * 3)
    assert app.control.purge(["no-such-queue"]) == 0
    assert app.control.purge() == 3
    assert app.control.purge() == 0
    assert db.execute("SELECT count(*) FROM results").fetchone() == (0,)


def test_chord_body_fails_naming_a_member_whose_result_is_gone(
        app: App, db: psycopg.Connection[Any]) -> None:
    t = make_tasks(app)
    early, late = t["add"].s(1, 1).set(queue="early"), t["add"].s(2, 2).set(queue="late")
    body = chord([early, late], t["tsum"].s()).apply_async()
    early_result, late_result = body.parent.results
    with running_worker(app, queues=["early"]):
        assert early_result.get(timeout=GET) == 2
    early_result.forget()  # as result_expires' pruning would
    with running_worker(app, queues=["late", "default"]):
        assert late_result.get(timeout=GET) == 4
        with pytest.raises(ChordError, match=f"{early_result.id} has no result"):
            body.get(timeout=GET)
    assert body.state == states.FAILURE
    assert db.execute("SELECT count(*) FROM results WHERE task = 'tsum' "
                      "AND error LIKE 'ChordError%%'").fetchone() == (1,)
    assert waiting(db) == (0, 0)


@pytest.fixture
def conn(app: App) -> Iterator[Dedicated]:
    dedicated = Dedicated(app.dsn, app.schema, "test")
    yield dedicated
    dedicated.close()


def test_a_rescued_starter_does_not_send_its_workflow_twice(
        app: App, db: psycopg.Connection[Any], pg_dsn: str, schema: str, conn: Dedicated,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = make_tasks(app)
    app.add_periodic_task(60.0, chain(t["add"].s(1, 2), t["add"].s(10)), name="wf")
    entry = next(e for e in code_entries(app) if e.name == "wf")
    marker = tmp_path / "held"
    monkeypatch.setenv("STARTER_MARKER", str(marker))
    with workers() as started:
        first = WorkerProcess(pg_dsn, schema, "starter_app:app", "-P", "threads", "-c", "2",
                              apps_dir=HERE)
        started.append(first)
        first.wait_ready()
        # what the scheduler inserts for the entry
        starter = app.send_task(entry.task, entry.args, entry.kwargs)
        # the workflow is sent and committed; the worker dies before the starter finishes
        wait_until(marker.exists, GET, message="starter sent its workflow")
        first.signal(signal.SIGKILL)
        first.wait()
        assert db.execute("SELECT state FROM jobs WHERE id = %s",
                          (starter.id,)).fetchone() == ("started",)
        # the leases of every job the dead worker held run out now (the workflow's first
        # step too, when the other thread had claimed it: 30 s of waiting otherwise)
        db.execute("UPDATE jobs SET lease_expires_at = now() - interval '1 minute' "
                   "WHERE state = 'started'")
        Rescuer(app.queries, interval=1).run_once(conn)
        assert db.execute("SELECT state FROM jobs WHERE id = %s",
                          (starter.id,)).fetchone() == ("queued",)
        second = WorkerProcess(pg_dsn, schema, "starter_app:app", "-P", "threads",
                               apps_dir=HERE)
        started.append(second)
        second.wait_ready()
        last_id = starter.get(timeout=GET)
        assert app.AsyncResult(last_id).get(timeout=GET) == 13
    # the starter ran twice, the workflow was sent once
    assert db.execute("SELECT attempt FROM results WHERE id = %s",
                      (starter.id,)).fetchone() == (2,)
    assert db.execute("SELECT count(*) FROM workflow_steps WHERE task = 'add'"
                      ).fetchone() == (2,)
    assert db.execute("SELECT result_id FROM canvas_starts WHERE starter = %s",
                      (starter.id,)).fetchone() == (last_id,)


def test_a_workflow_is_written_whole_or_not_at_all(
        app: App, db: psycopg.Connection[Any]) -> None:
    """A chord whose header is of one task is one statement with no transaction around
    it (a group with a member of its own options is several, in one transaction): a
    step or member that cannot go in (its task_id taken) leaves nothing behind."""
    t = make_tasks(app)
    members = [t["add"].s(i, i) for i in range(50)]
    first = chord(members, t["tsum"].s().set(task_id="body-id")).apply_async()
    held = t["add"].apply_async((0, 0), task_id="held-id")
    assert waiting(db) == (1, 50)
    with pytest.raises(DuplicateJob):  # the body's id: the step insert of one statement
        chord(members, t["tsum"].s().set(task_id="body-id")).apply_async()
    with pytest.raises(DuplicateJob):  # a member's id: a batch of its own
        group([*members, t["add"].s(1, 1).set(task_id="held-id")]).apply_async()
    assert db.execute("SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM "
                      "canvas_groups)").fetchone() == (51, 1)
    assert waiting(db) == (1, 50)
    sent = group(members).apply_async()
    assert db.execute("SELECT members::text[] FROM canvas_groups WHERE id = %s",
                      (sent.id,)).fetchone() == ([r.id for r in sent.results],)
    with running_worker(app):
        assert sent.get(timeout=GET) == [2 * i for i in range(50)]
        assert first.get(timeout=GET) == sum(2 * i for i in range(50))
        assert held.get(timeout=GET) == 0
    assert waiting(db) == (0, 0)
