"""unique_for= and unique_states= (issue 16, point 4): a key held for a period, in the
states that count, race-free across producers, for apply_async, apply_many and schedules."""

from __future__ import annotations

import math
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgqueue import App, AsyncResult
from pgqueue.db.connection import Dedicated
from pgqueue.exceptions import DuplicateJob
from pgqueue.services.pruner import Pruner
from pgqueue.services.scheduler import Scheduler
from tests.conftest import running_worker, wait_until


@pytest.fixture
def add(app: App) -> Any:
    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    return add


def live_and_final(db: psycopg.Connection[Any]) -> set[str]:
    rows = db.execute("SELECT id::text FROM jobs UNION ALL SELECT id::text FROM results")
    return {row[0] for row in rows.fetchall()}


def claim(db: psycopg.Connection[Any], key: str) -> tuple[Any, ...] | None:
    return db.execute("SELECT job_id::text, states, expires_at, claimed_at FROM unique_claims"
                      " WHERE key = %s", [key]).fetchone()


def test_unique_for_holds_the_key_whatever_the_state_until_the_period_ends(
        app: App, add: Any, db: psycopg.Connection[Any]) -> None:
    first = add.apply_async((1, 2), unique_key="k", unique_for=1.5)
    assert first.duplicate is False
    again = add.apply_async((5, 5), unique_key="k", unique_for=1.5)
    assert again.duplicate and again.id == first.id  # queued: held
    with running_worker(app):
        assert first.get(timeout=20) == 3
    after = add.apply_async((5, 5), unique_key="k", unique_for=1.5)
    assert after.duplicate and after.id == first.id  # finished, still within the period
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
    # Once the period is over, the key is free again: the next send is a new job.
    fresh = wait_until(lambda: (r := add.apply_async((7, 7), unique_key="k",
                                                      unique_for=1.5)).duplicate is False
                       and r, timeout=30, message="the period to end")
    assert fresh.id != first.id
    held = claim(db, "k")
    assert held is not None and held[0] == fresh.id
    accepted = db.execute("SELECT created_at FROM all_jobs WHERE id = ANY(%s::uuid[]) "
                          "ORDER BY created_at", [[first.id, fresh.id]]).fetchall()
    assert accepted[1][0] - accepted[0][0] >= timedelta(seconds=1.5)


def test_a_gone_holder_still_holds_within_the_period(
        app: App, db: psycopg.Connection[Any]) -> None:
    """ignore_result: the finished job leaves no row, and the key stays taken."""
    @app.task(name="t.quiet", ignore_result=True)
    def quiet() -> None: ...

    first = quiet.apply_async(unique_key="q", unique_for=60)
    with running_worker(app):
        wait_until(lambda: live_and_final(db) == set(), timeout=20, message="job gone")
    again = quiet.apply_async(unique_key="q", unique_for=60)
    assert again.duplicate and again.id == first.id
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


@pytest.mark.parametrize("scope, started_holds", [
    (("queued", "scheduled"), False), ("waiting", False), ("live", True)])
def test_whether_a_started_holder_holds_is_the_claims_choice(
        app: App, db: psycopg.Connection[Any], scope: Any, started_holds: bool) -> None:
    release = threading.Event()

    @app.task(name="t.slow")
    def slow(n: int) -> int:
        release.wait(30)
        return n

    first = slow.apply_async((1,), unique_key="s", unique_states=scope)
    queued_dup = slow.apply_async((2,), unique_key="s", unique_states=scope)
    assert queued_dup.duplicate and queued_dup.id == first.id  # queued: held
    try:
        with running_worker(app, concurrency=1):
            wait_until(lambda: db.execute("SELECT state FROM jobs WHERE id = %s",
                                          [first.id]).fetchone() == ("started",),
                       timeout=20, message="the first job to start")
            second = slow.apply_async((3,), unique_key="s", unique_states=scope)
            assert second.duplicate is started_holds
            if not started_holds:
                assert second.id != first.id
                third = slow.apply_async((4,), unique_key="s", unique_states=scope)
                assert third.duplicate and third.id == second.id  # queued behind the first
            release.set()
            assert first.get(timeout=20) == 1
            assert second.get(timeout=20) == (1 if started_holds else 3)
    finally:
        release.set()


def test_finished_states_count_only_when_named(app: App, add: Any) -> None:
    @app.task(name="t.boom")
    def boom() -> None:
        raise ValueError("boom")

    ok = add.apply_async((1, 1), unique_key="ok", unique_states=("queued", "success"))
    bad = boom.apply_async(unique_key="bad", unique_states=("queued", "success"))
    with running_worker(app):
        assert ok.get(timeout=20) == 2
        with pytest.raises(ValueError):
            bad.get(timeout=20)
    dup = add.apply_async((1, 1), unique_key="ok", unique_states=("queued", "success"))
    assert dup.duplicate and dup.id == ok.id  # a success holds for ever (no period)
    retry = boom.apply_async(unique_key="bad", unique_states=("queued", "success"))
    assert retry.duplicate is False and retry.id != bad.id  # a failure does not count


def test_on_duplicate_raise_names_the_holder(add: Any, db: psycopg.Connection[Any]) -> None:
    first = add.apply_async((1, 2), unique_key="r", unique_for=30)
    with pytest.raises(DuplicateJob, match=first.id) as caught:
        add.apply_async((1, 2), unique_key="r", unique_for=30, on_duplicate="raise")
    assert caught.value.job_id == first.id and caught.value.unique_key == "r"
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (1,)


def test_the_job_row_keeps_no_unique_key_and_the_claim_is_readable(
        add: Any, db: psycopg.Connection[Any]) -> None:
    """The claim, not jobs.unique_key (one live job per key), holds a scoped key."""
    first = add.apply_async((1, 2), unique_key="c", unique_for=30, unique_states="waiting")
    row = db.execute("SELECT unique_key FROM jobs WHERE id = %s", [first.id]).fetchone()
    assert row == (None,)
    held = claim(db, "c")
    assert held is not None
    job_id, states, expires_at, claimed_at = held
    assert job_id == first.id and states == ["scheduled", "queued", "retry"]
    assert timedelta(seconds=29) < expires_at - claimed_at <= timedelta(seconds=30)


@pytest.mark.parametrize("options, error, message", [
    ({"unique_for": -1}, ValueError, "unique_for must be a number of seconds above 0"),
    ({"unique_for": 0}, ValueError, "unique_for must be"),
    ({"unique_for": math.nan}, ValueError, "unique_for must be"),
    ({"unique_for": math.inf}, ValueError, "unique_for must be"),
    ({"unique_for": 10**12}, ValueError, "unique_for must be"),
    ({"unique_for": True}, ValueError, "unique_for must be"),
    ({"unique_for": "60"}, ValueError, "unique_for must be"),
    ({"unique_for": timedelta(seconds=-5)}, ValueError, "unique_for must be"),
    ({"unique_states": ()}, ValueError, "non-empty list"),
    ({"unique_states": "queue"}, ValueError, "unknown state 'queue'; did you mean 'queued'"),
    ({"unique_states": ["queued", "SUCCESS"]}, ValueError, "did you mean 'success'"),
    ({"unique_states": [None]}, ValueError, "unknown state None"),
    ({"unique_states": 5}, ValueError, "unique_states must be"),
])
def test_hostile_unique_options_are_refused_at_the_door(
        add: Any, db: psycopg.Connection[Any], options: dict[str, Any], error: type,
        message: str) -> None:
    with pytest.raises(error, match=message):
        add.apply_async((1, 2), unique_key="h", **options)
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
    assert claim(db, "h") is None


def test_unique_for_without_a_key_is_refused(add: Any) -> None:
    with pytest.raises(ValueError, match="need a unique_key"):
        add.apply_async((1, 2), unique_for=10)
    with pytest.raises(ValueError, match="need a unique_key"):
        add.apply_many([(1, 1), (2, 2)], unique_key=[None, None], unique_for=10)


def race(add: Any, key: str, senders: int, **options: Any) -> list[AsyncResult]:
    barrier = threading.Barrier(senders)
    results: list[AsyncResult] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            barrier.wait(10)
            results.append(add.apply_async((1, 1), unique_key=key, **options))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=send) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    return results


@pytest.mark.parametrize("options", [
    {"unique_for": 30}, {"unique_states": "waiting"}, {"unique_for": 30, "unique_states": "live"},
])
def test_racing_producers_exactly_one_accepted(
        app: App, add: Any, db: psycopg.Connection[Any], options: dict[str, Any]) -> None:
    """Threads send one key at the same instant, round after round: one job per key, and
    every sender holds it."""
    for round_ in range(15):
        key = f"race-{round_}"
        results = race(add, key, 8, **options)
        assert len(results) == 8
        accepted = [r for r in results if not r.duplicate]
        assert len(accepted) == 1, [r.id for r in results]
        assert {r.id for r in results} == {accepted[0].id}
        held = claim(db, key)
        assert held is not None and held[0] == accepted[0].id
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (15,)


def test_racing_while_holders_finish_never_hands_out_a_phantom(
        app: App, add: Any, db: psycopg.Connection[Any]) -> None:
    """States that let a finished holder go: a worker finishes holders as fast as it can
    while senders race; every id handed out is a job that exists, and at most one job
    with the key waits at any time."""
    handed: list[AsyncResult] = []
    with running_worker(app, concurrency=4):
        for _ in range(40):
            handed.extend(race(add, "busy", 4, unique_states="waiting"))
            waiting = db.execute("SELECT count(*) FROM jobs WHERE state <> 'started'"
                                 ).fetchone()
            assert waiting is not None and waiting[0] <= 1
        for result in handed:
            assert result.get(timeout=30) == 2
    assert {r.id for r in handed} <= live_and_final(db)


def test_apply_many_duplicates_within_the_batch_and_against_existing(
        add: Any, db: psycopg.Connection[Any]) -> None:
    held = add.apply_async((0, 0), unique_key="a", unique_for=30)
    results = add.apply_many([(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)],
                             unique_key=["a", "b", "b", None, "a"], unique_for=30)
    assert [r.duplicate for r in results] == [True, False, True, False, True]
    assert results[0].id == held.id and results[4].id == held.id
    assert results[2].id == results[1].id
    stored = {row[0] for row in db.execute("SELECT id::text FROM jobs").fetchall()}
    assert stored == {held.id, results[1].id, results[3].id}
    assert claim(db, "b") is not None and claim(db, "b")[0] == results[1].id  # type: ignore[index]


def send_at_once(add: Any, orders: list[list[str]]) -> list[list[AsyncResult]]:
    """Each list of keys sent by apply_many in a thread of its own, all at once."""
    barrier = threading.Barrier(len(orders))
    got: list[list[AsyncResult]] = []
    errors: list[BaseException] = []

    def send(order: list[str]) -> None:
        try:
            barrier.wait(10)
            got.append(add.apply_many([(1, 1)] * len(order), unique_key=order,
                                      unique_for=60))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=send, args=(order,)) for order in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    return got


def test_batches_with_the_same_keys_in_opposite_orders_do_not_deadlock(
        add: Any, db: psycopg.Connection[Any]) -> None:
    keys = [f"k{i}" for i in range(30)]
    for round_ in range(5):
        batch = [f"{key}-{round_}" for key in keys]
        got = send_at_once(add, [batch, batch[::-1]])
        assert sum(not r.duplicate for results in got for r in results) == len(keys)
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (5 * len(keys),)


def test_apply_many_raise_inserts_nothing(add: Any, db: psycopg.Connection[Any]) -> None:
    add.apply_async((0, 0), unique_key="a", unique_for=30)
    with pytest.raises(DuplicateJob):
        add.apply_many([(1, 1), (2, 2)], unique_key=["new", "a"], unique_for=30,
                       on_duplicate="raise")
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (1,)
    assert claim(db, "new") is None


def test_in_the_callers_transaction(app: App, add: Any, pg_dsn: str,
                                    db: psycopg.Connection[Any]) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(app.schema)))
        first = add.apply_async((1, 2), unique_key="tx", unique_for=30, connection=conn)
        second = add.apply_async((1, 2), unique_key="tx", unique_for=30, connection=conn)
        assert second.duplicate and second.id == first.id  # its own, uncommitted, claim
        assert claim(db, "tx") is None  # not committed yet
        conn.rollback()
    assert claim(db, "tx") is None  # rolled back with the job
    again = add.apply_async((1, 2), unique_key="tx", unique_for=30)
    assert again.duplicate is False


def test_expired_claims_are_pruned(app: App, add: Any, db: psycopg.Connection[Any]) -> None:
    add.apply_async((1, 1), unique_key="p1", unique_for=0.2)
    revoked = add.apply_async((1, 1), unique_key="p2", unique_states="waiting")
    add.apply_async((1, 1), unique_key="p3", unique_for=60)
    revoked.revoke()
    wait_until(lambda: db.execute("SELECT count(*) FROM unique_claims WHERE expires_at < now()"
                                  ).fetchone() == (1,), timeout=10, message="p1 to expire")
    conn = Dedicated(app.dsn, app.schema, "test-pruner")
    try:
        Pruner(app.queries, result_expires=None, worker_ttl=3600).run_once(conn)
    finally:
        conn.close()
    keys = [r[0] for r in db.execute("SELECT key FROM unique_claims").fetchall()]
    assert keys == ["p3"]


# -- schedules --------------------------------------------------------------------------

START = datetime(2026, 5, 4, 12, 0, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def beat_jobs(db: psycopg.Connection[Any]) -> list[str]:
    return [r[0] for r in db.execute(
        "SELECT id::text FROM jobs UNION ALL SELECT id::text FROM results").fetchall()]


def test_a_schedule_with_unique_states_skips_fires_while_its_job_waits(
        app: App, add: Any, db: psycopg.Connection[Any]) -> None:
    app.conf.beat_schedule = {"tick": {"task": "t.add", "schedule": 10.0, "args": [1, 1],
                                       "options": {"unique_states": "live"}}}
    clock = Clock()
    conn = Dedicated(app.dsn, app.schema, "test-scheduler")
    try:
        scheduler = Scheduler(app, clock=clock)
        scheduler.run_once(conn)  # writes the schedule
        for _ in range(3):  # three fires; the first job still waits
            clock.now += timedelta(seconds=10)
            scheduler.run_once(conn)
        sent = beat_jobs(db)
        assert len(sent) == 1
        held = claim(db, "beat:tick")
        assert held is not None and held[0] == sent[0]
        # the fires are spent all the same (the timetable goes on), their jobs skipped
        assert db.execute("SELECT total_run_count FROM schedules WHERE name = 'tick'"
                          ).fetchone() == (3,)
        with running_worker(app):
            AsyncResult(sent[0], app=app).get(timeout=20)
        clock.now += timedelta(seconds=10)
        scheduler.run_once(conn)
        assert len(beat_jobs(db)) == 2  # the holder finished: the next fire goes in
    finally:
        conn.close()


def test_a_schedule_with_unique_for_sends_at_most_one_job_per_period(
        app: App, add: Any, db: psycopg.Connection[Any]) -> None:
    app.conf.beat_schedule = {"tock": {"task": "t.add", "schedule": 1.0, "args": [1, 1],
                                       "options": {"unique_for": 1.0}}}
    clock = Clock()
    conn = Dedicated(app.dsn, app.schema, "test-scheduler")
    try:
        scheduler = Scheduler(app, clock=clock)
        scheduler.run_once(conn)
        clock.now += timedelta(seconds=1)
        scheduler.run_once(conn)
        clock.now += timedelta(seconds=1)
        scheduler.run_once(conn)  # within the period (real time): skipped
        assert len(beat_jobs(db)) == 1
        wait_until(lambda: db.execute("SELECT expires_at < now() FROM unique_claims"
                                      ).fetchone() == (True,), timeout=10,
                   message="the period to end")
        clock.now += timedelta(seconds=1)
        scheduler.run_once(conn)
        assert len(beat_jobs(db)) == 2
    finally:
        conn.close()


def test_a_schedule_with_bad_unique_options_is_refused_when_the_scheduler_starts(
        app: App, add: Any) -> None:
    from pgqueue.exceptions import ConfigurationError

    app.conf.beat_schedule = {"bad": {"task": "t.add", "schedule": 10.0, "args": [1, 1],
                                      "options": {"unique_for": -3}}}
    with pytest.raises(ConfigurationError, match="periodic task 'bad'.*unique_for must be"):
        Scheduler(app)
