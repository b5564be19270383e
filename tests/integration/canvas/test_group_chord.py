"""Groups and chords: members in parallel, values in header order, the body exactly once
when the last member finishes, ChordError naming a failed member."""

from __future__ import annotations

import sys
from typing import Any

import psycopg
import pytest

from pgqueue import App, ChordError, GroupResult, chain, chord, group, states
from tests.conftest import running_worker

GET = 60


def make_tasks(app: App) -> dict[str, Any]:
    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tsum")
    def tsum(values: list[int], extra: int = 0) -> int:
        return sum(values) + extra

    @app.task(name="ident")
    def ident(x: Any) -> Any:
        return x

    @app.task(name="boom")
    def boom(*args: Any) -> None:
        raise ValueError("member failed")

    @app.task(name="leave")
    def leave(*args: Any) -> None:
        sys.exit(3)

    return {"add": add, "tsum": tsum, "ident": ident, "boom": boom, "leave": leave}


def test_group_result_in_header_order(app: App) -> None:
    t = make_tasks(app)
    with running_worker(app, concurrency=4):
        result = group(t["add"].s(i, i) for i in range(20)).apply_async()
        assert isinstance(result, GroupResult)
        assert result.get(timeout=GET) == [2 * i for i in range(20)]
        assert result.ready() and result.successful() and not result.failed()
        assert result.completed_count() == 20
        assert not result.waiting()
        restored = GroupResult.restore(result.id, app=app)
        assert restored is not None
        assert [r.id for r in restored.results] == [r.id for r in result.results]
        assert restored.join(timeout=GET) == [2 * i for i in range(20)]


def test_group_members_carry_group_and_root(app: App, db: psycopg.Connection[Any]) -> None:
    t = make_tasks(app)
    result = group(t["add"].s(1, i) for i in range(3)).apply_async()
    rows = db.execute("SELECT group_id::text, root_id::text FROM jobs").fetchall()
    assert {g for g, _ in rows} == {result.id}
    assert {r for _, r in rows} == {result.results[0].id}


def test_empty_group_and_empty_chord(app: App) -> None:
    t = make_tasks(app)
    with running_worker(app):
        assert group([], app=app).apply_async().get(timeout=GET) == []
        assert chord([], t["tsum"].s(), app=app).apply_async().get(timeout=GET) == 0


def test_chord_both_forms(app: App, db: psycopg.Connection[Any]) -> None:
    t = make_tasks(app)
    with running_worker(app, concurrency=4):
        first = chord([t["add"].s(i, i) for i in range(10)], t["tsum"].s(extra=1))\
            .apply_async()
        second = chord(t["ident"].s(i) for i in range(5))(t["ident"].s())
        assert first.get(timeout=GET) == 91
        assert second.get(timeout=GET) == [0, 1, 2, 3, 4]
        assert isinstance(second.parent, GroupResult)
        assert second.parent.get(timeout=GET) == [0, 1, 2, 3, 4]
    # the body ran once, its parent is the header's group
    rows = db.execute("SELECT parent_id::text FROM results WHERE task = 'ident' "
                      "AND parent_id IS NOT NULL").fetchall()
    assert rows == [(second.parent.id,)]


def test_group_then_task_is_a_chord(app: App) -> None:
    t = make_tasks(app)
    workflow = group(t["add"].s(1, 1), t["add"].s(2, 2)) | t["tsum"].s()
    assert isinstance(workflow, chord)
    with running_worker(app):
        assert workflow.apply_async().get(timeout=GET) == 6


def test_chord_member_failure_is_a_chord_error(app: App) -> None:
    t = make_tasks(app)
    with running_worker(app):
        result = chord([t["add"].s(1, 1), t["boom"].s(), t["add"].s(2, 2)],
                       t["tsum"].s()).apply_async()
        with pytest.raises(ChordError) as caught:
            result.get(timeout=GET)
        failed = result.parent.results[1]
        assert failed.id in str(caught.value)
        assert "member failed" in str(caught.value)
        assert result.state == states.FAILURE
        assert result.parent.failed()


def test_member_that_exits_fails_the_chord(app: App) -> None:
    t = make_tasks(app)
    with running_worker(app):
        result = chord([t["add"].s(1, 1), t["leave"].s()], t["tsum"].s()).apply_async()
        with pytest.raises(ChordError):
            result.get(timeout=GET)


def test_body_that_fails(app: App) -> None:
    t = make_tasks(app)
    with running_worker(app):
        result = chord([t["add"].s(1, 1)], t["boom"].s()).apply_async()
        with pytest.raises(ValueError, match="member failed"):
            result.get(timeout=GET)


def test_nesting(app: App) -> None:
    """A group in a chain, a chain in a group, a chord whose header holds chains, a chain
    ending in a chord, a chord of chords."""
    t = make_tasks(app)
    add, tsum = t["add"], t["tsum"]
    with running_worker(app, concurrency=4):
        # chain -> group -> task: each member gets 2, the body gets the list
        r1 = chain(add.s(1, 1), group(add.s(10), add.s(20)), tsum.s()).apply_async()
        # group of chains
        r2 = group(chain(add.s(1, 1), add.s(1)), chain(add.s(2, 2), add.s(2))).apply_async()
        # chord whose header holds chains
        r3 = chord([add.s(1, 1) | add.s(1), add.s(5, 5)], tsum.s()).apply_async()
        # chain ending in a chord
        r4 = chain(add.s(1, 2), chord([add.s(1), add.s(2)], tsum.s())).apply_async()
        # chord of chords
        r5 = chord([chord([add.s(1, 1), add.s(2, 2)], tsum.s()),
                    chord([add.s(3, 3)], tsum.s())], tsum.s()).apply_async()
        assert r1.get(timeout=GET) == 12 + 22
        assert r2.get(timeout=GET) == [3, 6]
        assert r3.get(timeout=GET) == 3 + 10
        assert r4.get(timeout=GET) == 4 + 5
        assert r5.get(timeout=GET) == 6 + 6
        # chain result follows a chord's parent through
        assert r4.parent.get(timeout=GET) == [4, 5]
        assert r1.collect is not None
        values = [v for _, v in r4.parent.results[0].parent.collect(timeout=GET)]
        assert values[0] == 3 and 4 in values


def test_group_revoke_revokes_unstarted_members(app: App) -> None:
    t = make_tasks(app)
    result = chord([t["add"].s(i, i) for i in range(5)], t["tsum"].s()).apply_async()
    result.parent.revoke()
    assert result.parent.ready()
    with running_worker(app), pytest.raises(ChordError):
        result.get(timeout=GET)


def test_map_starmap_chunks(app: App) -> None:
    t = make_tasks(app)
    with running_worker(app):
        assert t["ident"].map([1, 2, 3]).apply_async().get(timeout=GET) == [1, 2, 3]
        assert t["add"].starmap([(1, 2), (3, 4)]).delay().get(timeout=GET) == [3, 7]
        parts = t["add"].chunks([(i, i) for i in range(10)], 3).apply_async()
        assert parts.get(timeout=GET) == [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]
        # map as a chain step: the previous result is its list of items
        assert (t["ident"].s([5, 6]) | t["ident"].map([])).apply_async()\
            .get(timeout=GET) == [5, 6]


def test_chord_link_error_gets_the_chord_error(app: App) -> None:
    t = make_tasks(app)

    @app.task(name="on_error")
    def on_error(request: Any, exc: BaseException, traceback: str | None) -> list[str]:
        return [request.id, type(exc).__name__]

    with running_worker(app):
        workflow = chord([t["add"].s(1, 1), t["boom"].s()], t["tsum"].s())
        workflow.link_error(on_error.s())
        result = workflow.apply_async()
        with pytest.raises(ChordError):
            result.get(timeout=GET)
        errback = next(c for c in result.children if c.name == "on_error")
        assert errback.get(timeout=GET) == [result.id, "ChordError"]
