"""apply_many takes its ids in one ``uuids(n)`` call and wakes its one queue once: the
ids are still distinct and in call order, any iterable of calls works, a task_id or a
unique key per call still behaves, and scheduled jobs wake nobody."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgqueue import App
from tests.integration.client.test_core_enqueue import listener as listener  # noqa: F401
from tests.integration.client.test_core_enqueue import notifications_until_sentinel


@pytest.fixture
def add(app: App) -> Any:
    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    return add


def test_ids_are_distinct_and_in_call_order_from_any_iterable(
        db: psycopg.Connection[Any], add: Any) -> None:
    results = add.apply_many((i, i) for i in range(1_000))  # a generator
    ids = [r.id for r in results]
    assert len(set(ids)) == 1_000 and ids == sorted(ids)  # time-ordered, as sent
    rows = dict(db.execute("SELECT id::text, args FROM jobs").fetchall())
    assert [rows[i] for i in ids] == [[i, i] for i in range(1_000)]
    again = add.apply_many([(1, 1)] * 3)
    assert min(r.id for r in again) > max(ids)  # the next call's ids follow


def test_a_task_id_and_unique_keys_still_hold(db: psycopg.Connection[Any], add: Any) -> None:
    [named] = add.apply_many([(1, 1)], task_id="order-1")
    assert named.id == "order-1"
    first = add.apply_many([(1, 1), (2, 2)], unique_key=["a", None])
    second = add.apply_many([(1, 1), (2, 2)], unique_key=["a", "b"])
    assert second[0].duplicate and second[0].id == first[0].id
    assert not second[1].duplicate
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (4,)


def test_one_wake_for_queued_jobs_none_for_scheduled(
        pg_dsn: str, schema: str, add: Any,
        listener: psycopg.Connection[Any]) -> None:  # noqa: F811
    add.apply_many([(i, i) for i in range(50)], countdown=60)
    add.apply_many([(i, i) for i in range(50)], queue="q7")
    assert notifications_until_sentinel(pg_dsn, schema, listener) == ["q7"]


def test_calls_that_are_not_an_iterable_are_refused_in_one_line(
        db: psycopg.Connection[Any], add: Any) -> None:
    with pytest.raises(TypeError, match=r"t\.add: the calls must be an iterable .* not int"):
        add.apply_many(5)
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
