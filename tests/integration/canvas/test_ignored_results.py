"""``ignore_result`` inside workflows: a job that something waits on (``options.followed``:
the next chain step, a chord body, a link) keeps its value whatever ignore_result says,
in every pool, as Celery passes it on; a job nothing waits on still stores nothing."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgqueue import App, chain, chord, states
from tests.conftest import running_worker, wait_until

GET = 60  # seconds: generous on a loaded machine
POOLS = ["threads", "processes", "solo", "asyncio"]


def make_tasks(app: App) -> dict[str, Any]:
    @app.task(name="quiet", ignore_result=True)
    def quiet(x: int) -> int:
        return x * 10

    @app.task(name="aquiet", ignore_result=True)
    async def aquiet(x: int) -> int:
        return x * 10

    @app.task(name="loud")
    def loud(x: int) -> int:
        return x * 10

    @app.task(name="plus")
    def plus(x: Any, y: int = 1) -> Any:
        return None if x is None else x + y

    @app.task(name="tsum")
    def tsum(values: list[Any]) -> Any:
        return values

    @app.task(name="unstorable", ignore_result=True)
    def unstorable(x: int) -> object:
        return {x}  # a set: not JSON

    return {"quiet": quiet, "aquiet": aquiet, "loud": loud, "plus": plus, "tsum": tsum,
            "unstorable": unstorable}


def _result(db: psycopg.Connection[Any], job_id: str) -> tuple[Any, ...] | None:
    return db.execute("SELECT state, result FROM results WHERE id = %s",
                      (job_id,)).fetchone()


@pytest.mark.parametrize("pool", POOLS)
def test_chain_step_with_ignore_result_passes_its_value_on(
        app: App, db: psycopg.Connection[Any], pool: str) -> None:
    t = make_tasks(app)
    first = t["aquiet"] if pool == "asyncio" else t["quiet"]
    with running_worker(app, pool=pool, concurrency=1 if pool == "solo" else 2):
        result = chain(first.s(4), t["plus"].s()).apply_async()
        assert result.get(timeout=GET) == 41
        # the step's own row keeps the value the next step read
        assert _result(db, result.parent.id) == (states.SUCCESS, 40)


@pytest.mark.parametrize("pool", POOLS)
def test_chord_header_of_ignore_result_members_gives_the_body_every_value(
        app: App, db: psycopg.Connection[Any], pool: str) -> None:
    t = make_tasks(app)
    member = t["aquiet"] if pool == "asyncio" else t["quiet"]
    with running_worker(app, pool=pool, concurrency=1 if pool == "solo" else 4):
        # plain ignore_result jobs beside the members: the finisher batches both kinds
        plain = [t["quiet"].delay(i) for i in range(20)]
        result = chord(member.s(i) for i in range(20))(t["tsum"].s())
        assert result.get(timeout=GET) == [10 * i for i in range(20)]
        wait_until(lambda: db.execute(
            "SELECT count(*) FROM jobs WHERE id = ANY(%s::uuid[])",
            ([p.id for p in plain],)).fetchone() == (0,), timeout=GET,
            message="plain jobs done")
    assert db.execute("SELECT count(*) FROM results WHERE id = ANY(%s::uuid[])",
                      ([p.id for p in plain],)).fetchone() == (0,)


def test_link_of_an_ignore_result_task_gets_the_value(app: App) -> None:
    t = make_tasks(app)
    with running_worker(app):
        result = t["quiet"].apply_async((3,), link=t["plus"].s(5))
        wait_until(lambda: result.children, timeout=GET, message="link sent")
        assert result.children[0].get(timeout=GET) == 35
        assert result.get(timeout=GET) == 30


def test_ignore_result_given_at_send_is_overruled_by_a_follower(app: App) -> None:
    t = make_tasks(app)
    with running_worker(app):
        step = t["loud"].s(2).set(ignore_result=True)
        assert chain(step, t["plus"].s()).apply_async().get(timeout=GET) == 21


def test_plain_ignore_result_job_still_stores_nothing(
        app: App, db: psycopg.Connection[Any]) -> None:
    t = make_tasks(app)
    with running_worker(app):
        quiet = t["quiet"].delay(1)
        sent_quiet = t["loud"].apply_async((1,), ignore_result=True)
        # nothing waits on it, so even a value that JSON can't hold costs nothing
        odd = t["unstorable"].delay(1)
        marker = t["loud"].delay(7)
        assert marker.get(timeout=GET) == 70
        ids = [quiet.id, sent_quiet.id, odd.id]
        wait_until(lambda: db.execute("SELECT count(*) FROM jobs WHERE id = ANY(%s::uuid[])",
                                      (ids,)).fetchone() == (0,), timeout=GET,
                   message="ignored jobs done")
    assert db.execute("SELECT count(*) FROM results WHERE id = ANY(%s::uuid[])",
                      (ids,)).fetchone() == (0,)


def test_unstorable_value_of_a_followed_step_fails_it_clearly(
        app: App, db: psycopg.Connection[Any]) -> None:
    t = make_tasks(app)
    with running_worker(app):
        result = chain(t["unstorable"].s(1), t["plus"].s()).apply_async()
        with pytest.raises((TypeError, ValueError), match="return value of task unstorable"):
            result.get(timeout=GET)
    state, _ = _result(db, result.parent.id) or (None, None)
    assert state == states.FAILURE
    error = db.execute("SELECT error FROM results WHERE id = %s",
                       (result.parent.id,)).fetchone()[0]
    assert "return value of task unstorable" in error, error
    assert _result(db, result.id)[0] == states.FAILURE  # the next step never ran


def test_eager_chain_passes_an_ignored_value_on(app: App) -> None:
    t = make_tasks(app)
    assert chain(t["quiet"].s(4), t["plus"].s()).apply().get() == 41
