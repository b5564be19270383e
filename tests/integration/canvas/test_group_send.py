"""How a group is written: a flat group is its jobs and one canvas_groups row (no steps,
no edges), its members' ids made in order; mixed or nested groups keep their members'
order too; a member the database cannot take leaves nothing behind."""

from __future__ import annotations

import uuid as uuid_module
from typing import Any

import psycopg
import pytest

from pgqueue import App, GroupResult, chain, chord, group, utils
from tests.conftest import running_worker
from tests.integration.canvas.conftest import CanvasTasks

GET = 60


def _members(db: psycopg.Connection[Any], gid: str) -> list[str]:
    row = db.execute("SELECT members::text[] FROM canvas_groups WHERE id = %s",
                     (gid,)).fetchone()
    assert row is not None, f"no canvas_groups row for {gid}"
    return list(row[0])


def test_flat_group_is_its_jobs_and_one_group_row(app: App, tasks: CanvasTasks,
                                                   db: psycopg.Connection[Any]) -> None:
    result = group(tasks.add.s(i, i) for i in range(500)).apply_async()
    ids = [r.id for r in result.results]
    assert _members(db, result.id) == ids
    assert db.execute("SELECT count(*) FROM canvas_steps").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM canvas_edges").fetchone() == (0,)
    rows = db.execute("SELECT id::text, parent_id, root_id::text, group_id::text, args "
                      "FROM jobs ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ids  # made in order: the claim order is the group's
    assert {(r[1], r[2], r[3]) for r in rows} == {(None, ids[0], result.id)}
    assert [r[4] for r in rows] == [[i, i] for i in range(500)]
    steps = db.execute("SELECT id::text FROM workflow_steps WHERE root_id = %s "
                       "ORDER BY id", (ids[0],)).fetchall()
    assert [s for (s,) in steps] == ids
    restored = GroupResult.restore(result.id, app=app)
    assert restored is not None and [r.id for r in restored.results] == ids
    with running_worker(app, concurrency=4):
        assert result.get(timeout=GET) == [2 * i for i in range(500)]


def test_mixed_and_nested_groups_keep_their_order(app: App, tasks: CanvasTasks,
                                                  db: psycopg.Connection[Any]) -> None:
    add, mul = tasks.add, tasks.mul
    # tasks alternating, a member with options of its own, a nested group, an empty one
    members = [add.s(1, 1), mul.s(2, 3), add.s(2, 2).set(priority=5),
               group(mul.s(3, 3), add.s(4, 4)), group([], app=app), mul.s(5, 5)]
    result = group(members).apply_async()
    ids = [r.id for r in result.results]
    assert len(ids) == 6 and len(set(ids)) == 6
    assert _members(db, result.id) == ids
    nested = db.execute("SELECT DISTINCT group_id::text FROM jobs "
                        "WHERE group_id <> %s", (result.id,)).fetchall()
    assert len(nested) == 1  # the nested group's members carry its id
    roots = db.execute("SELECT DISTINCT root_id::text FROM jobs").fetchall()
    assert roots == [(ids[0],)]
    with running_worker(app, concurrency=4):
        assert result.get(timeout=GET) == [2, 6, 4, 9, 8, 25]
        restored = GroupResult.restore(result.id, app=app)
        assert restored is not None
        assert restored.join(timeout=GET) == [2, 6, 4, 9, 8, 25]


def test_members_with_keyword_arguments(
        app: App, tasks: CanvasTasks, db: psycopg.Connection[Any]) -> None:
    result = group(tasks.add.s(i, y=1) for i in range(200)).apply_async()
    ids = [r.id for r in result.results]
    assert _members(db, result.id) == ids
    kwargs = db.execute("SELECT args, kwargs FROM jobs ORDER BY id").fetchall()
    assert kwargs == [([i], {"y": 1}) for i in range(200)]
    with running_worker(app, concurrency=4):
        assert result.get(timeout=GET) == [i + 1 for i in range(200)]


def test_a_group_past_the_step_limit_is_refused_whole(
        tasks: CanvasTasks, db: psycopg.Connection[Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pgqueue import limits

    monkeypatch.setattr(limits, "MAX_CANVAS_STEPS", 100)
    with pytest.raises(ValueError, match="more than 100 steps; send it in parts"):
        group(tasks.add.s(i, i) for i in range(101)).apply_async()
    with pytest.raises(ValueError, match="more than 100 steps"):  # nested, then flat
        group([group(tasks.add.s(i, i) for i in range(60)),
               *(tasks.add.s(i, i) for i in range(41))]).apply_async()
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM canvas_groups").fetchone() == (0,)
    assert len(group(tasks.add.s(i, i) for i in range(100)).apply_async().results) == 100


def test_group_that_a_step_waits_for_keeps_its_results(
        app: App, tasks: CanvasTasks, db: psycopg.Connection[Any]) -> None:
    result = chain(group(tasks.add.s(i, i) for i in range(50)), tasks.tsum.s()).apply_async()
    followed = db.execute("SELECT count(*) FROM jobs WHERE options @> "
                          "'{\"followed\": true}'").fetchone()
    assert followed == (50,)  # their results are stored, whatever ignore_result says
    with running_worker(app, concurrency=4):
        assert result.get(timeout=GET) == sum(2 * i for i in range(50))
    big = chord((tasks.add.s(i, 1) for i in range(300)), tasks.tsum.s()).apply_async()
    assert _members(db, big.parent.id) == [r.id for r in big.parent.results]
    with running_worker(app, concurrency=4):
        assert big.get(timeout=GET) == sum(i + 1 for i in range(300))


@pytest.mark.parametrize("spoil, message", [
    (lambda sig: sig.__setitem__("args", "not a list"), "args must be a list or tuple"),
    (lambda sig: sig.__setitem__("kwargs", {1: "x"}), "keyword names must be strings"),
    (lambda sig: sig.__setitem__("args", [object()]), "argument 0"),
    (lambda sig: sig.__setitem__("args", ["nul\x00"]), "NUL"),
])
def test_a_bad_member_leaves_nothing(tasks: CanvasTasks, db: psycopg.Connection[Any],
                                     spoil: Any, message: str) -> None:
    members = [tasks.add.s(i, i) for i in range(1000)]
    spoil(members[700])
    with pytest.raises((TypeError, ValueError), match=message) as caught:
        group(members).apply_async()
    assert "\n" not in str(caught.value)
    for table in ("jobs", "canvas_groups", "canvas_steps", "canvas_edges"):
        assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table


def test_a_member_id_taken_by_a_live_job_leaves_nothing(
        tasks: CanvasTasks, db: psycopg.Connection[Any]) -> None:
    taken = tasks.add.apply_async((0, 0))
    members = [tasks.add.s(i, i) for i in range(100)]
    members[50] = tasks.add.s(1, 1).set(task_id=taken.id)
    with pytest.raises(Exception, match="already exists"):
        group(members).apply_async()
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM canvas_groups").fetchone() == (0,)


def test_uuids_are_what_uuid_would_make() -> None:
    before = utils.uuid()
    ids = utils.uuids(5000)
    after = utils.uuid()
    everything = [before, *ids, after]
    assert everything == sorted(everything) and len(set(everything)) == len(everything)
    for made in (ids[0], ids[-1], ids[2500]):
        parsed = uuid_module.UUID(made)
        assert str(parsed) == made
        assert parsed.version == 7 and parsed.variant == uuid_module.RFC_4122
    assert utils.uuids(0) == []


@pytest.mark.parametrize("start", [0, (1 << 48) - 5, (1 << 62) - 7, (1 << 74) - 10])
def test_uuids_across_the_counters_carries(monkeypatch: pytest.MonkeyPatch,
                                           start: int) -> None:
    """Where the counter carries into the digits formatted once per run (and where it
    runs out, one id at a time into the next millisecond), the ids are still uuid()'s."""
    future = utils.time.time_ns() // 1_000_000 + 10**7
    monkeypatch.setattr(utils, "_uuid7_last", (future, start - 1))
    ids = utils.uuids(20)
    assert ids == sorted(ids) and len(set(ids)) == 20 and utils.uuid() > ids[-1]
    if start + 20 > 1 << 74:  # runs out: uuid() one by one, the last in the next ms
        assert [uuid_module.UUID(made).int >> 80 for made in (ids[0], ids[-1])] == [
            future, future + 1]
        return
    for tail, made in zip(range(start, start + 20), ids, strict=True):
        expected = uuid_module.UUID(int=future << 80 | 0x7 << 76 | (tail >> 62) << 64
                                    | 0b10 << 62 | (tail & ((1 << 62) - 1)))
        assert made == str(expected)
