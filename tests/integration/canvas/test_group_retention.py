"""canvas_groups rows expire with results (result_expires): the pruner deletes a group's
row once nothing of it is live and its members' results are past the retention, in
bounded batches read through canvas_groups_created_idx; never a live group's."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgqueue import App, GroupResult, chain, chord, group
from pgqueue.db.connection import Dedicated
from pgqueue.services.pruner import Pruner
from tests.conftest import running_worker, wait_until
from tests.helpers import plan_scans

GET = 60
DAY = 86400.0


def make_tasks(app: App) -> dict[str, Any]:
    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tsum")
    def tsum(values: list[int]) -> int:
        return sum(values)

    return {"add": add, "tsum": tsum}


@pytest.fixture
def conn(app: App) -> Iterator[Dedicated]:
    dedicated = Dedicated(app.dsn, app.schema, "test", durable=False)
    yield dedicated
    dedicated.close()


def groups(db: psycopg.Connection[Any]) -> set[str]:
    return {r[0] for r in db.execute("SELECT id::text FROM canvas_groups").fetchall()}


def age(db: psycopg.Connection[Any], interval: str = "2 days") -> None:
    """Everything sent and finished so far, as if it happened ``interval`` ago."""
    db.execute("UPDATE canvas_groups SET created_at = created_at - %s::interval", [interval])
    db.execute("UPDATE results SET finished_at = finished_at - %s::interval", [interval])


def test_groups_go_with_a_short_result_expires(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    t = make_tasks(app)
    with running_worker(app, concurrency=4):
        flat = group(t["add"].s(i, i) for i in range(20)).apply_async()
        body = chord((t["add"].s(i, 1) for i in range(5)), t["tsum"].s()).apply_async()
        nested = chain(t["add"].s(1, 1), group(t["add"].s(i) for i in range(3))).apply_async()
        assert flat.get(timeout=GET) == [2 * i for i in range(20)]
        assert body.get(timeout=GET) == 15
        assert nested.get(timeout=GET) == [2, 3, 4]
    assert len(groups(db)) == 3
    pruner = Pruner(app.queries, 1.0, worker_ttl=60, run_seconds=30)
    # the results expire a second after they finished, and the groups with them
    wait_until(lambda: pruner.run_once(conn) and not groups(db), timeout=GET,
               message="groups pruned")
    assert pruner.groups_deleted == 3
    assert GroupResult.restore(flat.id, app=app) is None
    assert db.execute("SELECT count(*) FROM results").fetchone() == (0,)


def test_a_live_group_is_never_pruned(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    t = make_tasks(app)
    pruner = Pruner(app.queries, DAY, worker_ttl=60, run_seconds=30)
    queued = group(t["add"].s(i, i) for i in range(3)).apply_async()  # no worker yet
    # a chord whose members finish while its body's queue has no worker
    body = chord((t["add"].s(i, 1) for i in range(3)), t["tsum"].s().set(queue="later")
                 ).apply_async()
    # a group of chains: its members are the chains' last steps, waiting in canvas_steps
    chains = group(chain(t["add"].s(i, 1).set(queue="first"), t["add"].s(1))
                   for i in range(2)).apply_async()
    with running_worker(app, queues=["first"]):
        wait_until(lambda: db.execute(
            "SELECT count(*) FROM results WHERE queue = 'first'").fetchone() == (2,),
            timeout=GET, message="first chain steps done")
    age(db)
    pruner.run_once(conn)
    assert groups(db) == {queued.id, body.parent.id, chains.id}

    with running_worker(app, queues=["default"]):
        assert queued.get(timeout=GET) == [0, 2, 4]
        assert chains.get(timeout=GET) == [2, 3]
        wait_until(lambda: db.execute("SELECT state FROM jobs WHERE id = %s",
                                      (body.id,)).fetchone() == ("queued",),
                   timeout=GET, message="chord body released")
    # finished, but their results are younger than the retention: kept
    pruner.run_once(conn)
    assert groups(db) == {queued.id, body.parent.id, chains.id}
    age(db)
    pruner.run_once(conn)
    assert groups(db) == {body.parent.id}  # its body is still queued
    assert GroupResult.restore(body.parent.id, app=app) is not None
    with running_worker(app, queues=["later"]):
        assert body.get(timeout=GET) == 6
    age(db)
    pruner.run_once(conn)
    assert groups(db) == set()


def _old_groups(db: psycopg.Connection[Any], count: int, members: int,
                live: bool = False) -> None:
    """``count`` group rows two days old, of ``members`` ids each: of jobs still queued
    (``live``), or of ids that are nowhere any more."""
    db.execute("""
        INSERT INTO canvas_groups (id, members, created_at)
        SELECT gen_random_uuid(), ARRAY(SELECT gen_random_uuid()
                                          FROM generate_series(1, %s) WHERE g > 0),
               now() - interval '2 days' - g * interval '1 ms'
          FROM generate_series(1, %s) g""", [members, count])
    if live:
        db.execute("""
            INSERT INTO jobs (id, queue, task, args, kwargs, state, priority, run_at,
                              ignore_result, options)
            SELECT m, 'default', 'add', '[]', '{}', 'queued', 0, now(), false, '{}'
              FROM canvas_groups g, unnest(g.members) m""")


def test_batches_read_past_old_live_groups(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    _old_groups(db, 30, 3, live=True)  # oldest: live, read once and kept
    live = groups(db)
    db.execute("""
        INSERT INTO canvas_groups (id, members, created_at)
        SELECT gen_random_uuid(), ARRAY[gen_random_uuid(), gen_random_uuid()],
               now() - interval '1 day' - g * interval '1 ms'
          FROM generate_series(1, 250) g""")
    db.execute("INSERT INTO canvas_groups (id, members) VALUES (gen_random_uuid(), '{}')")
    pruner = Pruner(app.queries, 3600.0, worker_ttl=60, run_seconds=60, group_batch=40)
    assert pruner.run_once(conn) == pruner.interval  # caught up within the run
    assert pruner.groups_deleted == 250
    assert len(groups(db)) == 31 and live <= groups(db)  # and the one sent just now


def test_the_group_prune_reads_through_its_index(
        app: App, db: psycopg.Connection[Any]) -> None:
    _old_groups(db, 2_000, 2)
    db.execute("""
        INSERT INTO canvas_groups (id, members)
        SELECT gen_random_uuid(), ARRAY[gen_random_uuid()] FROM generate_series(1, 8000)""")
    db.execute("""
        INSERT INTO results (id, queue, task, state, result, created_at, finished_at,
                             parent_id)
        SELECT gen_random_uuid(), 'default', 'add', 'SUCCESS', '1', now(), now(),
               gen_random_uuid()
          FROM generate_series(1, 5000)""")
    db.execute("""
        INSERT INTO jobs (id, queue, task, args, kwargs, state, priority, run_at,
                          ignore_result, options, parent_id)
        SELECT gen_random_uuid(), 'default', 'add', '[]', '{}', 'queued', 0, now(), false,
               '{}', gen_random_uuid()
          FROM generate_series(1, 5000)""")
    db.execute("ANALYZE canvas_groups")
    db.execute("ANALYZE results")
    db.execute("ANALYZE jobs")
    scans: list[tuple[str, str]] = []
    for after_at, after_id in ((None, None),
                               ("2000-01-01T00:00:00Z", "00000000-0000-0000-0000-000000000001")):
        scans += plan_scans(db, app.queries["canvas_group_prune"], {
            "older_than": DAY, "limit": 100, "after_at": after_at, "after_id": after_id})
    scans += plan_scans(db, app.queries["canvas_group_due"], {"older_than": DAY})
    assert ("Index Scan", "canvas_groups") in scans or \
        ("Index Only Scan", "canvas_groups") in scans, scans
    assert not [s for s in scans if "Seq Scan" in s[0]
                and s[1] in ("canvas_groups", "jobs", "results")], scans


def test_bad_retention_and_no_retention(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    _old_groups(db, 5, 1)
    Pruner(app.queries, None, worker_ttl=60).run_once(conn)  # results kept for ever
    assert len(groups(db)) == 5  # and so are the groups


def test_steps_and_edges_empty_themselves_whatever_the_ending(
        app: App, db: psycopg.Connection[Any]) -> None:
    """The other canvas tables need no pruner: every ending consumes what waits."""
    t = make_tasks(app)

    @app.task(name="boom")
    def boom(*args: Any) -> None:
        raise ValueError("boom")

    failed_member = chord([t["add"].s(1, 1), boom.s(), t["add"].s(2, 2)], t["tsum"].s())
    sent = [failed_member.apply_async(),
            chain(t["add"].s(1, 1), boom.s(), t["add"].s(1)).apply_async(),
            t["add"].apply_async((1, 1), link=t["add"].s(1), link_error=t["add"].si(0, 0)),
            boom.apply_async(link=t["add"].s(1), link_error=t["add"].si(0, 0))]
    revoked = chain(t["add"].s(1, 1).set(queue="never"), t["add"].s(1), t["add"].s(2))
    revoked_result = revoked.apply_async()
    revoked_result.parent.revoke()  # a step still waiting
    revoked_result.parent.parent.revoke()  # and the queued first step
    with running_worker(app, concurrency=2):
        for result in sent:
            with contextlib.suppress(Exception):  # some end FAILURE or REVOKED
                result.get(timeout=GET)
        wait_until(lambda: db.execute(
            "SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM canvas_steps), "
            "(SELECT count(*) FROM canvas_edges)").fetchone() == (0, 0, 0),
            timeout=GET, message="nothing left waiting")


def test_starter_claims_go_once_their_starter_is_gone(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    """A periodic workflow's start claims were pruned only by later starts: a schedule
    that stopped left its last ones for ever."""
    t = make_tasks(app)
    live = t["add"].delay(1, 1)  # a starter job still queued
    db.execute("INSERT INTO canvas_starts (starter, result_id, created_at) VALUES "
               "(gen_random_uuid(), 'x', now() - interval '1 hour'), "
               "(%s, 'y', now() - interval '1 hour'), "
               "(gen_random_uuid(), NULL, now())", [live.id])
    Pruner(app.queries, None, worker_ttl=60).run_once(conn)  # whatever result_expires
    assert db.execute("SELECT result_id FROM canvas_starts ORDER BY 1").fetchall() == [
        ("y",), (None,)]
