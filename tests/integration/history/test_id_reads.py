"""The other look-ups of results by id (a group's members, a job's parent, the root of
its workflow, forget) read the days since the time in the id first, and the whole table
when that finds nothing (sql/migrations/0013_result_id_time.sql, pgqueue.result
.read_bounded). Every test runs on both layouts, with ids whose time is to come, long
past or absent (uuid4, a custom task id), and rows written before the time in their id:
every row must be found."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from pgqueue import App, AsyncResult, ResultSet
from pgqueue.db.queries import Queries
from pgqueue.limits import row_id
from pgqueue.utils import uuid7
from tests.integration.history.conftest import partition_with_days
from tests.integration.history.test_id_bounds import scanned_leaves, uuid7_at

NOW = datetime.now(timezone.utc)

# (task id, how long before now its result finished)
HOSTILE = [
    (uuid7_at(NOW + timedelta(days=400)), timedelta(0)),  # a clock a year ahead
    (uuid7_at(NOW + timedelta(hours=3)), timedelta(0)),
    (uuid7_at(NOW - timedelta(days=3)), timedelta(0)),  # made days before it finished
    (str(uuid7()), timedelta(hours=3)),  # written by hand before its id's time
    (str(uuid7()), timedelta(0)),
    ("6f1c2e0a-3b4d-4e5f-8a6b-7c8d9e0f1a2b", timedelta(0)),  # v4
    ("order-17", timedelta(0)),  # custom: a uuid5 row id
    ("{" + uuid7_at(NOW + timedelta(days=2)).upper() + "}", timedelta(0)),  # braced v7
]
#: A test of reads by id runs once for each of HOSTILE.
each_hostile_id = pytest.mark.parametrize(("task_id", "ago"), HOSTILE, ids=[
    "v7-a-year-ahead", "v7-hours-ahead", "v7-days-behind", "v7-written-before", "v7",
    "v4", "custom", "braced-v7-ahead"])


def store(db: psycopg.Connection[Any], task_id: str, ago: timedelta,
          parent: str | None = None, root: str | None = None) -> str:
    """A SUCCESS result of ``task_id`` that finished ``ago`` before now; its row id."""
    rid = row_id(task_id)
    assert rid is not None
    db.execute("""INSERT INTO results (id, task_id, queue, task, state, result, parent_id,
                                       root_id, created_at, finished_at)
                  VALUES (%s, %s, 'default', 't', 'SUCCESS', '7', %s, %s,
                          now() - %s, now() - %s)""",
               [rid, task_id, parent, root, ago, ago])
    return rid


@each_hostile_id
def test_every_read_by_id_finds_a_result_whatever_its_id(
        app: App, db: psycopg.Connection[Any], layout: str, task_id: str,
        ago: timedelta) -> None:
    parent, root = str(uuid7()), str(uuid7())
    rid = store(db, task_id, ago, parent=parent, root=root)
    # a step of its workflow that has not started
    waiting = str(uuid7())
    db.execute("""INSERT INTO jobs (id, queue, task, state, root_id, run_at)
                  VALUES (%s, 'default', 't', 'scheduled', %s, now() + interval '1 day')""",
               [waiting, root])
    result = AsyncResult(task_id, app=app)
    assert result.parent is not None and result.parent.id == parent
    assert result.revoke_workflow() == [waiting]
    members = ResultSet([result, AsyncResult(str(uuid7()), app=app)], app=app)
    assert members.completed_count() == 1
    assert [m.state for m in members._states().values()] == ["SUCCESS", "PENDING"]
    result.forget()
    assert db.execute("SELECT count(*) FROM results WHERE id = %s", [rid]).fetchone() == (0,)
    assert result.state == "PENDING"


def test_a_group_of_members_of_every_kind_reads_each_once(
        app: App, db: psycopg.Connection[Any], layout: str) -> None:
    """Members whose ids are all UUIDv7 are read bounded by the earliest of them; those
    missing there and not live are read again over the whole table."""
    finished = [(task_id, ago) for task_id, ago in HOSTILE if len(task_id) == 36
                and task_id[14] == "7"]
    for task_id, ago in finished:
        store(db, task_id, ago)
    live = str(uuid7())
    db.execute("INSERT INTO jobs (id, queue, task, state) VALUES (%s, 'default', 't', 'queued')",
               [live])
    ids = [task_id for task_id, _ in finished] + [live, str(uuid7())]
    states = ResultSet([AsyncResult(i, app=app) for i in ids], app=app)._states()
    assert [states[i].state for i in ids] == ["SUCCESS"] * len(finished) + ["PENDING"] * 2
    assert all(states[i].result == 7 for i, _ in finished)
    # every member a uuid7 or not, many at once
    many = [str(uuid7()) for _ in range(20)] + ["order-9"]
    for task_id in many:
        store(db, task_id, timedelta(0))
    assert ResultSet([AsyncResult(i, app=app) for i in many], app=app).completed_count() == 21


def test_forget_of_a_result_sent_again_leaves_none(
        app: App, db: psycopg.Connection[Any], layout: str) -> None:
    task_id = uuid7_at(NOW + timedelta(days=2))
    rid = store(db, task_id, timedelta(0))
    AsyncResult(task_id, app=app).forget()
    AsyncResult(task_id, app=app).forget()  # nothing left: no error
    assert db.execute("SELECT count(*) FROM results WHERE id = %s", [rid]).fetchone() == (0,)


def _explain(db: psycopg.Connection[Any], text: str, kind: str, value: Any) -> set[str]:
    db.execute("DEALLOCATE ALL")
    db.execute(f"PREPARE read_by_id({kind}) AS {text}".encode())
    with db.transaction(force_rollback=True):
        ids = value if isinstance(value, list) else [value]
        literal = ",".join(str(uuid.UUID(i)) for i in ids)  # only UUIDs in the text
        literal = f"'{{{literal}}}'" if isinstance(value, list) else f"'{literal}'"
        plan = db.execute(
            f"EXPLAIN (ANALYZE, COSTS OFF) EXECUTE read_by_id({literal})".encode()).fetchall()
    # the scans only: a DELETE names every partition it may delete from
    return scanned_leaves([(line,) for (line,) in plan if "Scan" in line])


@pytest.mark.parametrize("statement", [
    "result_get_many_recent", "result_parent_recent", "result_parent_recent_unprepared",
    "result_forget_recent", "result_forget_recent_unprepared", "workflow_unstarted"])
@pytest.mark.parametrize("plan_mode", ["force_generic_plan", "force_custom_plan"])
def test_a_read_by_a_uuid7_reads_the_days_since_its_time_only(
        app: App, db: psycopg.Connection[Any], statement: str, plan_mode: str) -> None:
    partition_with_days(app, db)
    many = statement == "result_get_many_recent"
    text = Queries(app.schema)[statement].decode()
    text = text.replace("%(ids)s", "$1") if many else text.replace("%(id)s", "$1")
    kind = "uuid[]" if many else "uuid"
    db.execute(f"SET plan_cache_mode = {plan_mode}")
    old = (NOW - timedelta(days=3)).strftime("%Y%m%d")
    fresh_id = store(db, str(uuid7()), timedelta(0))  # found bounded: never read whole
    fresh = _explain(db, text, kind, [fresh_id] if many else fresh_id)
    assert fresh and not {leaf for leaf in fresh if leaf.startswith(f"results_p{old}")}
    whole_id = str(uuid.uuid4())
    whole = _explain(db, text, kind, [whole_id] if many else whole_id)
    assert f"results_p{old}_success" in whole and len(whole) > len(fresh)


@each_hostile_id
def test_a_retry_by_hand_moves_the_result_whatever_its_id(
        app: App, db: psycopg.Connection[Any], layout: str, task_id: str,
        ago: timedelta) -> None:
    """Retry by ids reads the days since the earliest time in them, all days for an id
    noted in results_early: every failed result is found and moved back to jobs."""
    rid = store(db, task_id, ago)
    db.execute("UPDATE results SET state = 'FAILURE' WHERE id = %s", [rid])
    assert app.retry([task_id]) == [task_id]
    assert db.execute("SELECT count(*) FROM results WHERE id = %s", [rid]).fetchone() == (0,)
    assert db.execute("SELECT state FROM jobs WHERE id = %s", [rid]).fetchall() == [("queued",)]


@each_hostile_id
def test_a_purge_revises_the_result_a_followed_job_already_has(
        app: App, db: psycopg.Connection[Any], layout: str, task_id: str,
        ago: timedelta) -> None:
    """A job sent again (it has a result) waits in a queue, a workflow step after it: the
    purge makes its one result REVOKED, found wherever its id's time says."""
    rid = store(db, task_id, ago)
    db.execute("INSERT INTO jobs (id, queue, task, state) VALUES (%s, 'default', 't', 'queued')",
               [rid])
    step = str(uuid7())
    db.execute("""INSERT INTO canvas_steps (id, task, job, after, remaining, runs_on, pass)
                  VALUES (%s, 't', '{"queue": "default"}', ARRAY[%s::uuid], 1, 'success',
                          'one')""", [step, rid])
    db.execute("INSERT INTO canvas_edges (before, step) VALUES (%s, %s)", [rid, step])
    assert app.control.purge() == 1
    assert db.execute("SELECT state FROM results WHERE id = %s",
                      [rid]).fetchall() == [("REVOKED",)]
