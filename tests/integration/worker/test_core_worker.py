"""The worker: ordering, queues, expiry, unknown tasks, ETAs, retries and task states."""

from __future__ import annotations

import os
import socket
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from pgqueue import App, MaxRetriesExceededError, NotRegistered, Task, TaskRevokedError
from tests.conftest import running_worker, wait_until


def now() -> datetime:
    return datetime.now(timezone.utc)


def rows(db: psycopg.Connection[Any], query: str, *params: Any) -> list[tuple[Any, ...]]:
    return db.execute(query, list(params)).fetchall()


def job_state(db: psycopg.Connection[Any], job_id: str) -> str | None:
    found = rows(db, "SELECT state FROM jobs WHERE id = %s", job_id)
    return found[0][0] if found else None


# -- ordering and selection ---------------------------------------------------------------

def test_higher_priority_first_then_fifo(app: App) -> None:
    order: list[int] = []

    @app.task
    def record(n: int) -> None:
        order.append(n)

    priorities = [0, 5, 9, 5, 0, 9, 0, 5, 9, 1, 1, 0]
    for n, priority in enumerate(priorities):
        record.apply_async((n,), priority=priority)
    with running_worker(app, concurrency=1):
        wait_until(lambda: len(order) == len(priorities), message="all jobs ran")
    expected = sorted(range(len(priorities)), key=lambda n: (-priorities[n], n))
    assert order == expected


def test_a_bulk_insert_runs_in_list_order(app: App) -> None:
    order: list[int] = []

    @app.task
    def record(n: int) -> None:
        order.append(n)

    record.apply_many([((n,), {}) for n in range(300)])
    with running_worker(app, concurrency=1):
        wait_until(lambda: len(order) == 300, timeout=60, message="all jobs ran")
    assert order == list(range(300))


def test_worker_consumes_only_its_queues(app: App, db: psycopg.Connection[Any]) -> None:
    ran: list[str] = []

    @app.task
    def where(name: str) -> str:
        ran.append(name)
        return name

    in_a = where.apply_async(("a",), queue="a")
    in_b = where.apply_async(("b",), queue="b")
    in_default = where.delay("default")
    with running_worker(app, queues=["a"]):
        assert in_a.get(timeout=10) == "a"
        # A queued job the worker could see is claimed at once; these were left alone.
        assert rows(db, "SELECT state, attempt FROM jobs WHERE id IN (%s, %s)",
                    in_b.id, in_default.id) == [("queued", 0), ("queued", 0)]
    with running_worker(app, queues=["b", "default"]):
        assert in_b.get(timeout=10) == "b"
        assert in_default.get(timeout=10) == "default"
    assert sorted(ran) == ["a", "b", "default"]


def test_a_worker_claims_no_more_than_its_free_slots(app: App,
                                                     db: psycopg.Connection[Any]) -> None:
    release = threading.Semaphore(0)
    finished: set[str] = set()

    @app.task(bind=True)
    def hold(self: Task) -> None:
        assert release.acquire(timeout=10)
        finished.add(str(self.request.id))

    def held_and_unfinished() -> int:
        # Claimed rows whose task has not returned yet. (A row stays 'started' for a
        # moment after its task returned, until the finisher's batch is written.)
        claimed = {r[0] for r in rows(db, "SELECT id::text FROM jobs WHERE state = 'started'")}
        return len(claimed - finished)

    hold.apply_many([((), {})] * 10)
    samples: list[int] = []
    with running_worker(app, concurrency=3):
        for remaining in range(10, 0, -1):
            def slots_full(expected: int = min(3, remaining)) -> bool:
                samples.append(held_and_unfinished())
                return samples[-1] == expected

            wait_until(slots_full, message="the free slots to fill")
            release.release()
        wait_until(lambda: rows(db, "SELECT count(*) FROM jobs") == [(0,)],
                   message="every job to finish")
    assert max(samples) == 3


def test_idle_workers_share_the_work_instead_of_one_hoarding_it(app: App) -> None:
    both_running = threading.Barrier(2, timeout=10)

    @app.task
    def meet() -> None:
        both_running.wait()  # breaks (and fails the job) unless both run at once

    with running_worker(app, concurrency=1), running_worker(app, concurrency=1):
        first, second = meet.delay(), meet.delay()
        first.get(timeout=15)
        second.get(timeout=15)


# -- jobs that must not run ---------------------------------------------------------------

def test_expired_jobs_end_revoked_without_running(app: App, db: psycopg.Connection[Any]) -> None:
    ran: list[int] = []

    @app.task
    def work(n: int) -> int:
        ran.append(n)
        return n

    expired = [work.apply_async((1,), expires=0.2),
               work.apply_async((2,), expires=now() + timedelta(milliseconds=200)),
               work.apply_async((3,), countdown=0.5, expires=0.3)]
    fresh = work.apply_async((4,), expires=300)
    wait_until(lambda: rows(db, "SELECT bool_and(expires_at < now()) FROM jobs "
                                "WHERE expires_at < now() + interval '1 minute'")[0][0],
               message="the short expiries to pass")
    with running_worker(app):
        assert fresh.get(timeout=10) == 4
        for result in expired:
            with pytest.raises(TaskRevokedError, match="expired"):
                result.get(timeout=10)
            assert result.state == "REVOKED"
    assert ran == [4]
    assert rows(db, "SELECT count(*) FROM results WHERE state = 'REVOKED'") == [(3,)]


def test_unknown_task_ends_failure_not_registered_once(app: App,
                                                      db: psycopg.Connection[Any]) -> None:
    result = app.send_task("nobody.knows.me", args=[1])
    with running_worker(app), pytest.raises(NotRegistered, match="nobody.knows.me"):
        result.get(timeout=10)
    assert result.state == "FAILURE"
    assert rows(db, "SELECT attempt, task FROM results WHERE id = %s", result.id) == [
        (1, "nobody.knows.me")]
    assert rows(db, "SELECT count(*) FROM jobs") == [(0,)]  # not left behind, not looping


# -- time -----------------------------------------------------------------------------------

def test_countdown_and_eta_start_no_earlier_and_within_a_second(
    app: App, db: psycopg.Connection[Any]
) -> None:
    started: dict[str, datetime] = {}

    @app.task(bind=True)
    def stamp(self: Task) -> None:
        started[str(self.request.id)] = now()

    with running_worker(app, concurrency=4):
        jobs = [stamp.apply_async(countdown=1.0), stamp.apply_async(countdown=1.7),
                stamp.apply_async(eta=now() + timedelta(seconds=1.3)),
                stamp.apply_async(eta=now() + timedelta(seconds=2.2))]
        asked = dict(rows(db, "SELECT id::text, run_at FROM jobs WHERE state = 'scheduled'"))
        assert len(asked) == 4
        wait_until(lambda: len(started) == 4, timeout=15, message="the delayed jobs to run")
    # a second with LISTEN; polling through a pooler adds up to one poll (docs/deploying.md)
    via = os.environ.get("PGQUEUE_TEST_VIA_PGBOUNCER")
    polling = bool(via) and via != "listen"
    bound = 1.0 + (float(app.conf.worker_poll_interval) if polling else 0.0)
    for job in jobs:
        late = (started[job.id] - asked[job.id]).total_seconds()
        assert 0 <= late < bound, f"started {late:.3f}s after its run_at"


# -- retries --------------------------------------------------------------------------------

def test_autoretry_follows_the_backoff_formula(app: App, db: psycopg.Connection[Any]) -> None:
    factor = 0.5
    attempts: list[dict[str, Any]] = []

    @app.task(bind=True, autoretry_for=(ValueError,), retry_backoff=factor,
              retry_jitter=False, max_retries=3)
    def flaky(self: Task) -> None:
        run_at = rows(db, "SELECT run_at FROM jobs WHERE id = %s", self.request.id)[0][0]
        attempts.append({"retries": self.request.retries, "start": now(), "run_at": run_at})
        attempts[-1]["failed"] = now()
        raise ValueError(f"attempt {self.request.retries + 1}")

    with running_worker(app):
        result = flaky.delay()
        with pytest.raises(ValueError, match="^attempt 4$"):  # the last exception
            result.get(timeout=20)
    assert [a["retries"] for a in attempts] == [0, 1, 2, 3]
    for before, after in zip(attempts, attempts[1:], strict=False):
        countdown = factor * 2 ** before["retries"]
        scheduled = (after["run_at"] - before["failed"]).total_seconds()
        assert countdown <= scheduled < countdown + 0.25, (before["retries"], scheduled)
        waited = (after["start"] - before["failed"]).total_seconds()
        # without LISTEN (behind a pooler) the worker finds the staged job by polling
        slack = 1.0 + (app.conf.worker_poll_interval if app.listen_dsn is None else 0)
        assert countdown <= waited < countdown + slack, (before["retries"], waited)
    assert result.state == "FAILURE" and result.retries == 3


def test_explicit_retry_until_max_retries_then_failure_with_the_last_exception(
    app: App, db: psycopg.Connection[Any]
) -> None:
    @app.task(bind=True, max_retries=2)
    def stubborn(self: Task, n: int) -> None:
        try:
            raise KeyError(f"try {self.request.retries}")
        except KeyError as exc:
            raise self.retry(exc=exc, countdown=0) from exc

    @app.task(bind=True)
    def without_exc(self: Task) -> None:
        raise self.retry(countdown=0, max_retries=1)

    with running_worker(app):
        first, second = stubborn.delay(1), without_exc.delay()
        with pytest.raises(KeyError, match="try 2"):
            first.get(timeout=15)
        with pytest.raises(MaxRetriesExceededError, match="max_retries=1"):
            second.get(timeout=15)
    assert rows(db, "SELECT attempt FROM results WHERE id = %s", first.id) == [(3,)]
    assert "KeyError" in (first.traceback or "")


def test_retry_can_change_arguments(app: App) -> None:
    @app.task(bind=True)
    def countdown_to_zero(self: Task, n: int) -> int:
        if n > 0:
            raise self.retry(args=(n - 1,), countdown=0, max_retries=10)
        return self.request.retries

    with running_worker(app):
        assert countdown_to_zero.delay(3).get(timeout=15) == 3


def test_retry_state_is_visible_between_attempts(app: App, db: psycopg.Connection[Any]) -> None:
    @app.task(bind=True)
    def later(self: Task) -> None:
        raise self.retry(exc=ConnectionError("service down"), countdown=60)

    with running_worker(app):
        result = later.delay()
        wait_until(lambda: job_state(db, result.id) == "retry", message="the retry")
        assert result.state == "RETRY"
        assert "service down" in str(result.info)
        assert not result.ready()
        result.revoke()  # no need to wait a minute for the next attempt
        assert result.state == "REVOKED"


def test_autoretry_for_and_dont_autoretry_for(app: App, db: psycopg.Connection[Any]) -> None:
    @app.task(autoretry_for=(LookupError,), dont_autoretry_for=(KeyError,), max_retries=2,
              retry_kwargs={"countdown": 0})
    def fails_with(kind: str) -> None:
        raise {"index": IndexError, "key": KeyError, "type": TypeError}[kind](kind)

    with running_worker(app):
        retried = fails_with.delay("index")
        excluded = fails_with.delay("key")
        unlisted = fails_with.delay("type")
        with pytest.raises(IndexError):
            retried.get(timeout=15)
        with pytest.raises(KeyError):
            excluded.get(timeout=15)
        with pytest.raises(TypeError):
            unlisted.get(timeout=15)
    attempts = dict(rows(db, "SELECT id::text, attempt FROM results"))
    assert attempts == {retried.id: 3, excluded.id: 1, unlisted.id: 1}


# -- results and states -------------------------------------------------------------------

def test_ignore_result_leaves_no_result_row(app: App, db: psycopg.Connection[Any]) -> None:
    ran: list[str] = []

    @app.task(ignore_result=True)
    def quiet() -> str:
        ran.append("quiet")
        return "nobody reads this"

    @app.task
    def normal(flag: str) -> str:
        ran.append(flag)
        return flag

    with running_worker(app):
        quiet.delay()
        normal.apply_async(("ignored",), ignore_result=True)
        marker = normal.delay("kept")
        assert marker.get(timeout=10) == "kept"
        wait_until(lambda: len(ran) == 3, message="every job ran")
        wait_until(lambda: rows(db, "SELECT count(*) FROM jobs") == [(0,)],
                   message="the jobs to finish")
    assert rows(db, "SELECT id::text FROM results") == [(marker.id,)]


def test_update_state_progress_is_visible_while_the_task_runs(app: App) -> None:
    proceed = threading.Event()

    @app.task(bind=True)
    def long_job(self: Task, total: int) -> int:
        for done in range(1, total + 1):
            self.update_state(state="PROGRESS", meta={"done": done, "total": total})
            assert proceed.wait(10)
            proceed.clear()
        return total

    with running_worker(app):
        result = long_job.delay(2)
        wait_until(lambda: result.state == "PROGRESS", message="the PROGRESS state")
        assert result.info == {"done": 1, "total": 2}
        proceed.set()
        wait_until(lambda: result.info == {"done": 2, "total": 2}, message="more progress")
        assert result.status == "PROGRESS" and not result.ready()
        proceed.set()
        assert result.get(timeout=10) == 2
    assert result.state == "SUCCESS"


def test_track_started_shows_started_while_running(app: App) -> None:
    release = threading.Event()

    @app.task(track_started=True)
    def tracked() -> str:
        assert release.wait(10)
        return "done"

    @app.task
    def untracked() -> str:
        assert release.wait(10)
        return "done"

    with running_worker(app, concurrency=2):
        seen = tracked.delay()
        unseen = untracked.delay()
        wait_until(lambda: seen.state == "STARTED", message="STARTED")
        assert unseen.state == "PENDING"  # as in Celery without track_started
        release.set()
        assert seen.get(timeout=10) == unseen.get(timeout=10) == "done"


def test_task_track_started_setting(app: App) -> None:
    app.conf.task_track_started = True
    release = threading.Event()

    @app.task
    def tracked() -> None:
        assert release.wait(10)

    with running_worker(app):
        result = tracked.delay()
        wait_until(lambda: result.state == "STARTED", message="STARTED")
        release.set()
        result.get(timeout=10)


def test_request_carries_the_job_context(app: App) -> None:
    @app.task(bind=True, max_retries=5)
    def introspect(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if self.request.retries == 0:
            raise self.retry(countdown=0)
        request = self.request
        return {"id": request.id, "retries": request.retries, "args": request.args,
                "kwargs": request.kwargs, "hostname": request.hostname,
                "eta": request.eta.isoformat() if request.eta else None,
                "task": request.task, "queue": request.delivery_info["queue"],
                "called_directly": request.called_directly}

    eta = now().replace(microsecond=0) + timedelta(seconds=0.5)
    with running_worker(app) as worker:
        result = introspect.apply_async((1, "two"), {"three": 3}, eta=eta, queue="default")
        info = result.get(timeout=10)
    assert info["id"] == result.id
    assert info["retries"] == 1
    assert (info["args"], info["kwargs"]) == ([1, "two"], {"three": 3})
    assert datetime.fromisoformat(info["eta"]) == eta
    assert info["task"] == introspect.name and info["queue"] == "default"
    assert info["called_directly"] is False
    assert info["hostname"] and socket.gethostname() in info["hostname"]
    assert info["hostname"] in (worker.hostname, worker.nodename)


def test_a_task_returning_non_json_fails_clearly(app: App) -> None:
    @app.task
    def returns_a_set() -> set[int]:
        return {1, 2}

    with running_worker(app), pytest.raises(TypeError, match="not JSON-serializable"):
        returns_a_set.delay().get(timeout=10)


def test_solo_pool_runs_jobs(app: App) -> None:
    @app.task
    def square(x: int) -> int:
        return x * x

    with running_worker(app, pool="solo"):
        results = square.apply_many([((i,), {}) for i in range(20)])
        assert [r.get(timeout=10) for r in results] == [i * i for i in range(20)]


# -- options the worker's task carries, for jobs sent by name ------------------------------
# In Celery these are worker-side: a producer that only calls send_task() does not know
# them, so the worker applies its own task's options to such jobs.

def test_track_started_of_the_worker_task_applies_to_jobs_sent_by_name(
    app: App, pg_dsn: str, schema: str
) -> None:
    release = threading.Event()

    @app.task(name="w.tracked", track_started=True)
    def tracked() -> None:
        assert release.wait(10)

    producer = App("producer", dsn=pg_dsn, schema=schema, set_as_current=False)
    try:
        with running_worker(app):
            result = producer.send_task("w.tracked")
            try:
                wait_until(lambda: result.state == "STARTED", timeout=20, message="STARTED")
            finally:
                release.set()
    finally:
        producer.close()


def test_ignore_result_of_the_worker_task_applies_to_jobs_sent_by_name(
    app: App, db: psycopg.Connection[Any], pg_dsn: str, schema: str
) -> None:
    @app.task(name="w.quiet", ignore_result=True)
    def quiet() -> int:
        return 1

    producer = App("producer", dsn=pg_dsn, schema=schema, set_as_current=False)
    try:
        with running_worker(app):
            producer.send_task("w.quiet")
            wait_until(lambda: rows(db, "SELECT count(*) FROM jobs") == [(0,)],
                       message="the job to finish")
    finally:
        producer.close()
    assert rows(db, "SELECT count(*) FROM results") == [(0,)]


def test_request_hostname_is_the_node_name_as_in_celery(app: App) -> None:
    @app.task(bind=True)
    def where(self: Task) -> str | None:
        return self.request.hostname

    with running_worker(app, name="node-7@somewhere"):
        assert where.delay().get(timeout=10) == "node-7@somewhere"
