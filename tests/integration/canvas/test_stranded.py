"""No workflow step waits for ever: a predecessor deleted by plain SQL (before or after
it started), a chord member deleted, a chain's middle step deleted, a step edited into
nonsense. The canvas sweeper (the maintenance leader's) ends what nothing can release
any more through results, so AsyncResult.get() returns and what follows stops as after
any ending; a step row that cannot become a job ends FAILURE instead of failing the
statement that ended its predecessor. On both layouts of results."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from pgqueue import App, ChordError, chain, chord, states
from pgqueue.db import migrations
from pgqueue.db.connection import Dedicated
from pgqueue.exceptions import MalformedJob, TaskRevokedError, WorkerLostError
from pgqueue.services.maintenance import leader_services
from pgqueue.services.rescuer import Rescuer
from pgqueue.services.sweeper import StepSweeper
from tests.conftest import running_worker, wait_until
from tests.integration.canvas.helpers import make_tasks, waiting

GET = 60
GRACE = 0.3


@pytest.fixture(params=["plain", "partitioned"])
def layout(request: pytest.FixtureRequest, app: App) -> str:
    """Each test on a plain results table and on one partitioned by day."""
    if request.param == "partitioned":
        assert migrations.partition_results(app.dsn, app.schema)
    return str(request.param)


@pytest.fixture
def conn(app: App) -> Iterator[Dedicated]:
    dedicated = Dedicated(app.dsn, app.schema, "test", durable=False)
    yield dedicated
    dedicated.close()


def sweep_until(sweeper: StepSweeper, conn: Dedicated, done: Callable[[], Any],
                message: str) -> None:
    """Run the sweeper until ``done`` (each run waits for nothing but the database)."""
    wait_until(lambda: sweeper.run_once(conn) >= 0 and done(), timeout=GET, interval=0.05,
               message=message)


def results_of(db: psycopg.Connection[Any], job_id: str) -> list[tuple[Any, ...]]:
    return db.execute("SELECT state, error FROM results WHERE id = %s", [job_id]).fetchall()


@pytest.mark.usefixtures("layout")
def test_a_queued_predecessor_deleted_by_sql_ends_the_chain_and_runs_its_errback(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    t = make_tasks(app)
    first = t["add"].s(1, 1).set(queue="held")
    first.link_error(t["note"].si())
    last = chain(first, t["add"].s(1), t["add"].s(1)).apply_async()
    middle, head = last.parent, last.parent.parent
    db.execute("DELETE FROM jobs WHERE id = %s", [head.id])
    assert waiting(db) == (3, 3)  # the errback, the two chain steps

    sweeper = StepSweeper(app.queries, grace=GRACE)
    sweeper.run_once(conn)  # young steps, and nothing seen twice yet: nothing ends
    assert waiting(db) == (3, 3) and list(sweeper.ended) == []
    sweep_until(sweeper, conn, lambda: waiting(db)[0] < 3, "the lost job ended")
    assert list(sweeper.ended) == [head.id]
    assert results_of(db, head.id)[0][0] == states.REVOKED
    assert "lost" in str(results_of(db, head.id)[0][1])
    for stopped in (middle, last):
        with pytest.raises(TaskRevokedError, match=f"{head.id} ended REVOKED \\(lost"):
            stopped.get(timeout=GET)
    with pytest.raises(TaskRevokedError, match="lost"):
        head.get(timeout=GET)
    # the lost job's link_error runs, as a revoked job's does; then nothing waits
    with running_worker(app):
        errback = next(c for c in head.children if c.id != middle.id)
        assert errback.get(timeout=GET) == "errback ran"
    assert waiting(db) == (0, 0)
    # the sweeper's row of the lost job joins its workflow
    assert db.execute("SELECT root_id::text FROM results WHERE id = %s",
                      [head.id]).fetchone() == (head.id,)
    sweeper.run_once(conn)
    assert list(sweeper.ended) == [head.id]  # once


@pytest.mark.usefixtures("layout")
def test_a_started_predecessor_deleted_by_sql_ends_the_next_step(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    t = make_tasks(app)
    go = threading.Event()
    started = threading.Event()

    @app.task(name="slow")
    def slow() -> int:
        started.set()
        assert go.wait(GET)
        return 1

    with running_worker(app) as worker:
        result = chain(slow.s(), t["add"].s(1)).apply_async()
        assert started.wait(GET)
        db.execute("DELETE FROM jobs WHERE id = %s", [result.parent.id])
        go.set()
        # its finish is fenced off (the row is gone): the step after it stays waiting
        wait_until(lambda: worker.finisher.flushed >= 1, timeout=GET,
                   message="the outcome flushed")
        assert results_of(db, result.parent.id) == []
        assert waiting(db) == (1, 1)
        sweep_until(StepSweeper(app.queries, grace=GRACE), conn,
                    lambda: waiting(db) == (0, 0), "the step ended")
        with pytest.raises(TaskRevokedError, match=result.parent.id):
            result.get(timeout=GET)


@pytest.mark.usefixtures("layout")
def test_a_deleted_chord_member_fails_the_body_and_runs_its_errback(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    t = make_tasks(app)
    body = t["tsum"].s()
    body.link_error(t["note"].si())
    result = chord([t["add"].s(i, i).set(queue="held") for i in range(3)], body
                   ).apply_async()
    members = result.parent.results
    db.execute("DELETE FROM jobs WHERE id = %s", [members[1].id])
    sweep_until(StepSweeper(app.queries, grace=GRACE), conn,
                lambda: results_of(db, result.id), "the chord body ended")
    with pytest.raises(ChordError, match=f"Dependency {members[1].id} raised lost"):
        result.get(timeout=GET)
    # the group row names its members: the lost one's row is in the group
    assert db.execute("SELECT group_id::text FROM results WHERE id = %s",
                      [members[1].id]).fetchone() == (result.parent.id,)
    with running_worker(app, queues=["default", "held"]):
        assert members[0].get(timeout=GET) == 0 and members[2].get(timeout=GET) == 4
        errback = next(c for c in result.children)
        assert errback.get(timeout=GET) == "errback ran"
    assert db.execute("SELECT count(*) FROM results WHERE task = 'tsum'").fetchone() == (1,)
    assert waiting(db) == (0, 0)


@pytest.mark.usefixtures("layout")
def test_a_chain_of_three_whose_middle_row_is_deleted(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    t = make_tasks(app)
    sweeper = StepSweeper(app.queries, grace=GRACE)
    # the middle step still waiting in canvas_steps
    waits = chain(t["add"].s(1, 1).set(queue="held"), t["add"].s(1), t["add"].s(1)
                  ).apply_async()
    db.execute("DELETE FROM canvas_steps WHERE id = %s", [waits.parent.id])
    # the middle step released into jobs, and waiting there for a worker
    released = chain(t["add"].s(2, 2), t["add"].s(1).set(queue="later"), t["add"].s(1)
                     ).apply_async()
    with running_worker(app):
        wait_until(lambda: db.execute("SELECT 1 FROM jobs WHERE id = %s",
                                      [released.parent.id]).fetchone(),
                   timeout=GET, message="middle step released")
    db.execute("DELETE FROM jobs WHERE id = %s", [released.parent.id])
    sweep_until(sweeper, conn, lambda: results_of(db, waits.id) and results_of(db, released.id),
                "both last steps ended")
    assert sorted(sweeper.ended) == sorted([waits.parent.id, released.parent.id])
    for last in (waits, released):
        assert last.state == states.REVOKED
        with pytest.raises(TaskRevokedError, match=last.parent.id):
            last.get(timeout=GET)
    # the first step of the first chain still runs; its edge to the deleted step goes
    with running_worker(app, queues=["held"]):
        assert waits.parent.parent.get(timeout=GET) == 2
    assert waiting(db) == (0, 0)


@pytest.mark.usefixtures("layout")
def test_results_pruned_after_the_release_end_nothing(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    """A predecessor whose result is gone once its edge was consumed is no loss: the
    sweeper leaves the chain and the chord to end as they would."""
    t = make_tasks(app)
    early, late = t["add"].s(1, 1).set(queue="early"), t["add"].s(2, 2).set(queue="late")
    body = chord([early, late], t["tsum"].s()).apply_async()
    done = chain(t["add"].s(1, 1).set(queue="early"), t["add"].s(1).set(queue="later"))\
        .apply_async()
    with running_worker(app, queues=["early"]):
        assert body.parent.results[0].get(timeout=GET) == 2
        assert done.parent.get(timeout=GET) == 2
    body.parent.results[0].forget()  # as result_expires' pruning would
    done.parent.forget()
    sweeper = StepSweeper(app.queries, grace=GRACE)
    sweeper.run_once(conn)
    wait_until(lambda: sweeper.run_once(conn) >= 0 and not sweeper.suspects
               and db.execute("SELECT min(created_at) < now() - interval '1 second' "
                              "FROM canvas_steps").fetchone() == (True,),
               timeout=GET, message="steps old enough to be looked at")
    sweeper.run_once(conn)
    assert list(sweeper.ended) == [] and sweeper.suspects == {}
    with running_worker(app, queues=["late", "later", "default"]):
        assert done.get(timeout=GET) == 3  # released before its predecessor's prune
        with pytest.raises(ChordError, match="has no result"):
            body.get(timeout=GET)
    assert waiting(db) == (0, 0)


@pytest.mark.usefixtures("layout")
def test_a_step_that_cannot_become_a_job_fails_alone(
        app: App, db: psycopg.Connection[Any]) -> None:
    """Its predecessor succeeds as it did; the step ends FAILURE (MalformedJob), and the
    step after it stops. Before, every finish of the predecessor failed with the step's
    error (even the FAILURE the finisher stores in its place): the job went back and
    forth between its lease and the rescuer, and never ended."""
    t = make_tasks(app)
    edits = ['"nonsense"', '{"queue": null}', '{"queue": "default", "priority": "high"}',
             '{"queue": "default", "countdown": 1e300}', '[1, 2]']
    sent = [chain(t["add"].s(i, i), t["add"].s(1), t["add"].s(1)).apply_async()
            for i in range(len(edits))]
    for result, edit in zip(sent, edits, strict=True):
        db.execute("UPDATE canvas_steps SET job = %s::jsonb WHERE id = %s",
                   [edit, result.parent.id])
    healthy = chain(t["add"].s(1, 1), t["add"].s(1)).apply_async()
    with running_worker(app):
        assert healthy.get(timeout=GET) == 3
        for i, result in enumerate(sent):
            assert result.parent.parent.get(timeout=GET) == 2 * i
            with pytest.raises(MalformedJob, match="could not become a job"):
                result.parent.get(timeout=GET)
            with pytest.raises(MalformedJob, match=result.parent.id):
                result.get(timeout=GET)
    assert waiting(db) == (0, 0)


def test_a_nonsense_step_does_not_wedge_the_rescuer(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    """A lost worker's job that a nonsense step waits for is failed by the rescuer with
    the others of its batch; before, the batch failed at every run."""
    t = make_tasks(app)
    lost = chain(t["add"].s(1, 1).set(max_retries=0), t["add"].s(1)).apply_async()
    alone = t["add"].apply_async((2, 2), max_retries=0)
    db.execute("UPDATE canvas_steps SET job = '{\"queue\": null, \"priority\": 1e9}' "
               "WHERE id = %s", [lost.id])
    db.execute("UPDATE jobs SET state = 'started', worker = 'gone', attempt = 1, "
               "lease_expires_at = now() - interval '1 minute' WHERE id = ANY(%s)",
               ([lost.parent.id, alone.id],))
    Rescuer(app.queries, interval=1).run_once(conn)
    with pytest.raises(WorkerLostError):
        alone.get(timeout=GET)
    with pytest.raises(WorkerLostError):
        lost.get(timeout=GET)
    assert db.execute("SELECT queue, priority FROM results WHERE id = %s",
                      [lost.id]).fetchone() == ("default", 0)


def test_a_step_edited_to_wait_for_nothing_is_failed(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    t = make_tasks(app)
    counted = chain(t["add"].s(1, 1), t["add"].s(1), t["add"].s(1)).apply_async()
    renamed = chain(t["add"].s(2, 2).set(queue="held"), t["add"].s(1)).apply_async()
    errback = t["note"].si()
    unwaited = t["add"].apply_async((3, 3), queue="held", link=t["add"].s(1),
                                    link_error=errback)
    # its count says one more predecessor than it has
    db.execute("UPDATE canvas_steps SET remaining = 2 WHERE id = %s", [counted.parent.id])
    # the edges deleted by hand: nothing would ever count it down
    db.execute("DELETE FROM canvas_edges WHERE before = %s", [unwaited.id])
    with running_worker(app):
        assert counted.parent.parent.get(timeout=GET) == 2
    # a step's id changed by hand (and its job into nonsense): its edge points at
    # nothing, it waits for nothing
    db.execute("UPDATE canvas_steps SET id = gen_random_uuid(), job = '[1]' WHERE id = %s",
               [renamed.id])
    sweeper = StepSweeper(app.queries, grace=GRACE)
    sweep_until(sweeper, conn, lambda: waiting(db)[0] == 0, "the stranded steps ended")
    assert len(sweeper.ended) == 4
    with pytest.raises(MalformedJob, match="stranded"):
        counted.parent.get(timeout=GET)
    with pytest.raises(MalformedJob, match="stranded"):
        counted.get(timeout=GET)
    assert db.execute("SELECT count(*) FROM results WHERE state = 'FAILURE' AND error LIKE "
                      "'MalformedJob: stranded%%'").fetchone() == (4,)
    # the jobs they were waiting for still run, and consume their dangling edges
    with running_worker(app, queues=["held"]):
        assert renamed.parent.get(timeout=GET) == 4
        assert unwaited.get(timeout=GET) == 6
    assert waiting(db) == (0, 0)


def test_revoking_a_nonsense_step(app: App, db: psycopg.Connection[Any]) -> None:
    t = make_tasks(app)
    result = chain(t["add"].s(1, 1).set(queue="held"), t["add"].s(1)).apply_async()
    db.execute("UPDATE canvas_steps SET job = '7' WHERE id = %s", [result.id])
    result.revoke_workflow()  # before: null value in column "queue" of results
    assert result.state == states.REVOKED
    assert waiting(db) == (0, 0)


def test_edges_that_outlived_a_result_are_replayed(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    """A result written with triggers off (a restore, a replica) leaves its edges: the
    sweeper runs the trigger on it again, and the step goes on with its value."""
    t = make_tasks(app)
    result = chain(t["add"].s(1, 1).set(queue="held"), t["add"].s(5)).apply_async()
    first = result.parent.id
    with db.transaction():
        db.execute("SET LOCAL session_replication_role = replica")
        db.execute("""
            WITH moved AS (DELETE FROM jobs WHERE id = %s RETURNING *)
            INSERT INTO results (id, queue, task, state, result, created_at, root_id)
            SELECT id, queue, task, 'SUCCESS', '2', created_at, root_id FROM moved""",
                   [first])
    assert waiting(db) == (1, 1)
    sweeper = StepSweeper(app.queries, grace=GRACE)
    sweep_until(sweeper, conn, lambda: waiting(db) == (0, 0), "the step released")
    assert list(sweeper.replayed) == [first] and list(sweeper.ended) == []
    with running_worker(app):
        assert result.get(timeout=GET) == 7


def test_a_predecessor_back_within_the_grace_is_not_lost(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    """Seen gone once is not enough: a row moved out and back by hand stays."""
    t = make_tasks(app)
    result = chain(t["add"].s(1, 1).set(queue="held"), t["add"].s(1)).apply_async()
    db.execute("UPDATE canvas_steps SET created_at = now() - interval '1 hour'")
    parked = "00000000-0000-4000-8000-000000000001"
    db.execute("UPDATE jobs SET id = %s WHERE id = %s", [parked, result.parent.id])
    sweeper = StepSweeper(app.queries, grace=3600)
    sweeper.run_once(conn)
    assert list(sweeper.suspects) == [("gone", result.parent.id)]
    db.execute("UPDATE jobs SET id = %s WHERE id = %s", [result.parent.id, parked])
    sweeper.run_once(conn)  # a pass that does not see it again forgets it
    assert sweeper.suspects == {} and list(sweeper.ended) == []
    with running_worker(app, queues=["held", "default"]):
        assert result.get(timeout=GET) == 3


def test_two_sweepers_end_a_lost_job_once(
        app: App, db: psycopg.Connection[Any], conn: Dedicated, pg_dsn: str) -> None:
    """Two leaders for a moment: the second finds the edges consumed."""
    t = make_tasks(app)
    result = chain(t["add"].s(1, 1).set(queue="held"), t["add"].s(1)).apply_async()
    db.execute("DELETE FROM jobs WHERE id = %s", [result.parent.id])
    db.execute("UPDATE canvas_steps SET created_at = now() - interval '1 hour'")
    one, two = (StepSweeper(app.queries, grace=0) for _ in range(2))
    other = Dedicated(app.dsn, app.schema, "test", durable=False)
    try:
        one.run_once(conn)  # notes it, and (grace 0) ends it on its next run
        two.run_once(other)
        one.run_once(conn)
        two.run_once(other)
    finally:
        other.close()
    assert [*one.ended, *two.ended] == [result.parent.id]
    assert db.execute("SELECT count(*) FROM results WHERE id = %s",
                      [result.parent.id]).fetchone() == (1,)


def test_the_sweep_is_bounded_and_reads_on_where_it_stopped(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    """Steps waiting for ids that never existed, read 7 a statement."""
    db.execute("""
        WITH steps AS (
            INSERT INTO canvas_steps (id, task, job, after, remaining, runs_on, pass,
                                      created_at)
            SELECT gen_random_uuid(), 'add', '{"queue": "default", "args": [1]}',
                   ARRAY[gen_random_uuid()], 1, 'success', 'one',
                   now() - interval '1 hour'
              FROM generate_series(1, 30)
            RETURNING id, after)
        INSERT INTO canvas_edges (before, step) SELECT after[1], id FROM steps""")
    sweeper = StepSweeper(app.queries, grace=GRACE, batch=7, run_seconds=60)
    assert sweeper.run_once(conn) <= GRACE  # back when the first is due
    assert len(sweeper.suspects) == 30
    sweep_until(sweeper, conn, lambda: waiting(db) == (0, 0), "all ended")
    assert len(sweeper.ended) == 30
    assert db.execute("SELECT count(*) FROM results WHERE state = 'REVOKED'"
                      ).fetchone() == (60,)  # the lost ids and the steps
    # a run cut short by its time budget goes on from where it stopped
    short = StepSweeper(app.queries, grace=GRACE, batch=1, run_seconds=0)
    db.execute("""
        INSERT INTO canvas_steps (id, task, job, after, remaining, runs_on, pass)
        SELECT gen_random_uuid(), 'add', '{}', '{}', 1, 'success', 'one'
          FROM generate_series(1, 3)""")
    short.run_once(conn)
    assert short._after is not None


def test_the_leader_runs_the_sweeper(app: App) -> None:
    sweepers = [s for s in leader_services(app) if isinstance(s, StepSweeper)]
    assert len(sweepers) == 1 and sweepers[0].leader_only
    with pytest.raises(ValueError, match="grace"):
        StepSweeper(app.queries, grace=-1)
