"""Workflows under faults and hostile input: every ending of a job (worker finish,
rescue of a lost worker, expiry, revoke) advances or stops its workflow, members finishing
at once on several workers release a chord body exactly once, bad input is refused at the
door."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from pgqueue import App, ChordError, WorkerLostError, chain, chord, group, signature, states
from pgqueue.client.periodic import code_entries
from pgqueue.db.connection import Dedicated
from pgqueue.exceptions import TaskRevokedError
from pgqueue.services.rescuer import Rescuer
from tests.conftest import running_worker

GET = 60


@pytest.fixture
def conn(app: App) -> Iterator[Dedicated]:
    dedicated = Dedicated(app.dsn, app.schema, "test")
    yield dedicated
    dedicated.close()


def make_tasks(app: App) -> dict[str, Any]:
    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tsum")
    def tsum(values: list[int]) -> int:
        return sum(values)

    @app.task(name="ordered")
    def ordered(values: list[int]) -> list[int]:
        return values

    return {"add": add, "tsum": tsum, "ordered": ordered}


def test_chord_members_on_several_workers_release_the_body_once(
        app: App, db: psycopg.Connection[Any]) -> None:
    t = make_tasks(app)
    n = 300
    with running_worker(app, concurrency=4), running_worker(app, concurrency=4), \
            running_worker(app, concurrency=4):
        result = chord([t["add"].s(i, 0) for i in range(n)], t["ordered"].s()).apply_async()
        assert result.get(timeout=GET) == list(range(n))
    assert db.execute("SELECT count(*) FROM results WHERE task = 'ordered'").fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM canvas_steps").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM canvas_edges").fetchone() == (0,)


def test_rescued_member_ends_the_chord_and_the_chain(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    """A job whose worker vanished with no retries left ends FAILURE (WorkerLostError) in
    the rescuer's statement: the chord gets its ChordError, the chain stops."""
    t = make_tasks(app)
    lost = t["add"].s(1, 1).set(max_retries=0)
    body = chord([lost, t["add"].s(2, 2)], t["tsum"].s()).apply_async()
    lost_id = body.parent.results[0].id
    chained = chain(t["add"].s(1, 1).set(max_retries=0), t["add"].s(5)).apply_async()
    db.execute("UPDATE jobs SET state = 'started', worker = 'gone', attempt = 1, "
               "lease_expires_at = now() - interval '1 minute' WHERE id = ANY(%s)",
               ([lost_id, chained.parent.id],))
    Rescuer(app.queries, interval=1).run_once(conn)
    assert app.AsyncResult(lost_id).state == states.FAILURE
    with pytest.raises(ChordError, match=lost_id):
        body.get(timeout=GET)
    with pytest.raises(WorkerLostError):
        chained.get(timeout=GET)


def test_expired_step_stops_the_chain(app: App) -> None:
    t = make_tasks(app)
    first = t["add"].s(1, 1).set(expires=timedelta(seconds=-1))
    result = chain(first, t["add"].s(1)).apply_async()
    with running_worker(app), pytest.raises(TaskRevokedError):
        result.get(timeout=GET)
    assert result.state == states.REVOKED


def test_countdown_and_expires_of_a_later_step_count_from_its_release(
        app: App, db: psycopg.Connection[Any]) -> None:
    t = make_tasks(app)
    result = chain(t["add"].s(1, 1), t["add"].s(1).set(countdown=3600, expires=7200))\
        .apply_async()
    with running_worker(app):
        assert result.parent.get(timeout=GET) == 2
    row = db.execute("SELECT state, run_at - now() > interval '3500 seconds', "
                     "expires_at - run_at BETWEEN interval '3590 seconds' "
                     "AND interval '3610 seconds', args FROM jobs WHERE id = %s",
                     (result.id,)).fetchone()
    assert row == ("scheduled", True, True, [2, 1])


def test_workflow_joins_the_callers_transaction(app: App, pg_dsn: str,
                                                db: psycopg.Connection[Any]) -> None:
    t = make_tasks(app)
    with psycopg.connect(pg_dsn) as mine:
        chain(t["add"].s(1, 1), t["add"].s(1)).apply_async(connection=mine)
        assert db.execute("SELECT count(*) FROM canvas_steps").fetchone() == (0,)
        mine.rollback()
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
    with psycopg.connect(pg_dsn) as mine:
        result = chain(t["add"].s(1, 1), t["add"].s(1)).apply_async(connection=mine)
    with running_worker(app):
        assert result.get(timeout=GET) == 3


def test_hostile_input_is_refused_before_anything_is_written(
        app: App, db: psycopg.Connection[Any]) -> None:
    t = make_tasks(app)
    with pytest.raises(TypeError, match="JSON"):
        chain(t["add"].s(1, 1), t["add"].s(object())).apply_async()
    with pytest.raises(TypeError, match="JSON"):
        chain(t["add"].s(object(), 1), t["add"].s(1)).apply_async()
    looped = t["add"].s(1, 1)
    looped.link(looped)
    with pytest.raises(ValueError, match="nests deeper"):
        looped.apply_async()
    with pytest.raises(ValueError, match="empty chain"):
        chain(app=app).apply_async()
    with pytest.raises(ValueError, match="empty group inside a chain"):
        chain(t["add"].s(1, 1), group([], app=app), t["tsum"].s()).apply_async()
    with pytest.raises(ValueError, match="needs a body"):
        chord([t["add"].s(1, 1)]).apply_async()
    with pytest.raises(TypeError, match="unknown workflow option 'bogus'"):
        chain(t["add"].s(1, 1), t["add"].s(1)).apply_async(bogus=1)
    with pytest.raises(ValueError, match="unique_key is refused"):
        chain(t["add"].s(1, 1), t["add"].s(1).set(unique_key="k")).apply_async()
    assert db.execute("SELECT (SELECT count(*) FROM jobs) + (SELECT count(*) FROM "
                      "canvas_steps)").fetchone() == (0,)


def test_a_periodic_entry_may_be_a_chain(app: App) -> None:
    t = make_tasks(app)
    app.add_periodic_task(60.0, chain(t["add"].s(1, 2), t["add"].s(10)), name="wf")
    entry = next(e for e in code_entries(app) if e.name == "wf")
    assert entry.task == "celery.chain"
    with running_worker(app):
        # what the scheduler inserts: the entry's task, args and kwargs
        starter = app.send_task(entry.task, entry.args, entry.kwargs)
        last_id = starter.get(timeout=GET)
        assert app.AsyncResult(last_id).get(timeout=GET) == 13


def test_eager_mode_runs_workflows_in_process(app: App) -> None:
    t = make_tasks(app)
    app.conf.task_always_eager = True
    assert chain(t["add"].s(1, 1), t["add"].s(2)).apply_async().get() == 4
    assert chord([t["add"].s(1, 1), t["add"].s(2, 2)], t["tsum"].s()).apply_async()\
        .get() == 6
    assert group(t["add"].s(1, 1), t["add"].s(2, 2)).apply_async().get() == [2, 4]
    assert signature("add", (1, 2), app=app).apply_async().get() == 3
