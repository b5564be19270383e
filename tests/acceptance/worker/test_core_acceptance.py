"""Issue 2's acceptance, with real `pgqueue worker` subprocesses.

10,000 jobs over three priorities and two queues, enqueued singly, in bulk and inside
committed transactions, all end SUCCESS exactly once with the right result; jobs enqueued
in rolled-back transactions never run. Then timing: ETA/countdown, backoff, expiry and
`get()` woken by notification.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgqueue import App, AsyncResult, TaskRevokedError
from tests.acceptance.procs import WorkerProcess, workers
from tests.conftest import wait_until

pytestmark = pytest.mark.acceptance

APPS = Path(__file__).resolve().parents[1] / "apps"
QUEUES = ("q1", "q2")
PRIORITIES = (0, 5, 9)


@pytest.fixture
def producer(pg_dsn: str, schema: str) -> Iterator[App]:
    """The sending side: an app that does not import the worker's task module."""
    app = App("producer", dsn=pg_dsn, schema=schema, set_as_current=False,
              task_default_queue="q1")

    @app.task(name="core.record")
    def record(n: int) -> int:  # the worker's version records the execution
        raise AssertionError("runs in the worker, not here")

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL(
            "CREATE TABLE {}.executions (job_id uuid NOT NULL, n int NOT NULL, worker text, "
            "started_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        ).format(sql.Identifier(schema)))
    yield app
    app.close()


def start_worker(pg_dsn: str, schema: str, *args: str) -> WorkerProcess:
    worker = WorkerProcess(pg_dsn, schema, "core_app", *args, apps_dir=APPS)
    worker.wait_ready()
    return worker


def query(db: psycopg.Connection[Any], text: str, *params: Any) -> list[tuple[Any, ...]]:
    return db.execute(text.encode(), list(params)).fetchall()


def assert_clean_exit(worker: WorkerProcess, failed_tasks: int = 0) -> None:
    """SIGTERM stops the worker with status 0; its log holds no traceback and one ERROR
    line per task that failed for good."""
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()[-3000:]
    output = worker.output()
    assert "Traceback" not in output, output[-3000:]
    assert output.count(" ERROR/") == failed_tasks, output[-3000:]


def test_ten_thousand_jobs_each_succeed_exactly_once(
    pg_dsn: str, schema: str, producer: App, db: psycopg.Connection[Any]
) -> None:
    record = producer.tasks["core.record"]
    counter = iter(range(10**6))
    expected: dict[str, tuple[int, str, int]] = {}  # job id -> (n, queue, priority)
    rolled_back: list[str] = []

    def kind(i: int) -> tuple[str, int]:
        return QUEUES[i % 2], PRIORITIES[i % 3]

    def keep(results: list[AsyncResult], ns: list[int], queue: str, priority: int) -> None:
        for result, n in zip(results, ns, strict=True):
            expected[result.id] = (n, queue, priority)

    with workers() as started:
        started += [start_worker(pg_dsn, schema, "-Q", "q1,q2", "-c", "8", "-n", f"w{i}")
                    for i in (1, 2)]
        began = time.monotonic()

        # 1,500 singly, each its own statement and transaction.
        for i in range(1500):
            queue, priority = kind(i)
            n = next(counter)
            if i % 5 == 0:
                queue, priority = "q1", 0  # the producer's defaults
                result = record.delay(n)
            elif i % 5 in (1, 2):
                result = producer.send_task("core.record", (n,), queue=queue,
                                            priority=priority)
            else:
                result = record.apply_async(args=[n], queue=queue, priority=priority)
            keep([result], [n], queue, priority)

        # 6,000 in bulk: one statement per 500.
        for i in range(12):
            queue, priority = kind(i)
            ns = [next(counter) for _ in range(500)]
            if i % 2:
                results = record.apply_many([((n,), {}) for n in ns], queue=queue,
                                            priority=priority)
            else:
                results = producer.send_many("core.record", [[n] for n in ns], queue=queue,
                                             priority=priority)
            keep(results, ns, queue, priority)

        # 2,500 inside 25 committed transactions (singly and in bulk), and 500 inside 10
        # rolled-back ones, interleaved on the same connection.
        with psycopg.connect(pg_dsn) as conn:
            for i in range(35):
                queue, priority = kind(i)
                commit = i % 7 not in (3, 6)
                size = 50 if commit else 25
                singles = [next(counter) for _ in range(size)]
                bulk = [next(counter) for _ in range(size)]
                results = [record.apply_async((n,), queue=queue, priority=priority,
                                              connection=conn) for n in singles]
                results += record.apply_many([((n,), {}) for n in bulk], queue=queue,
                                             priority=priority, connection=conn)
                if commit:
                    conn.commit()
                    keep(results, singles + bulk, queue, priority)
                else:
                    conn.rollback()
                    rolled_back += [r.id for r in results]
        enqueued = time.monotonic() - began
        assert len(expected) == 10_000 and len(rolled_back) == 500

        def finished() -> bool:
            for worker in started:
                assert worker.proc.poll() is None, worker.output()[-3000:]
            return bool(query(db, "SELECT count(*) FROM results")[0][0] >= 10_000)

        wait_until(finished, timeout=120, interval=0.2, message="10,000 results")
        drained = time.monotonic() - began
        for worker in started:
            assert_clean_exit(worker)

    print(f"\n10,000 jobs: enqueued in {enqueued:.1f}s, all finished after {drained:.1f}s")
    assert query(db, "SELECT count(*) FROM jobs") == [(0,)]
    outcomes = {
        str(job_id): (state, result, args, queue, priority, attempt)
        for job_id, state, result, args, queue, priority, attempt in query(
            db, "SELECT id, state, result, args, queue, priority, attempt FROM results")
    }
    assert set(outcomes) == set(expected)
    wrong = [
        (job_id, found) for job_id, found in outcomes.items()
        if found != ("SUCCESS", 2 * expected[job_id][0], [expected[job_id][0]],
                     expected[job_id][1], expected[job_id][2], 1)
    ]
    assert not wrong, wrong[:5]
    executions = query(db, "SELECT job_id::text, count(*) FROM executions GROUP BY 1")
    assert len(executions) == 10_000
    assert {job_id for job_id, _ in executions} == set(expected)
    assert [e for e in executions if e[1] != 1] == []  # exactly once
    assert query(db, "SELECT count(*) FROM executions WHERE job_id = ANY(%s::uuid[])",
                 rolled_back) == [(0,)]
    assert query(db, "SELECT count(*) FROM results WHERE id = ANY(%s::uuid[])",
                 rolled_back) == [(0,)]
    # Both workers took part.
    assert query(db, "SELECT count(DISTINCT split_part(worker, ':', 1)) FROM executions") == [
        (2,)]


def test_timing_with_a_real_worker(pg_dsn: str, schema: str, producer: App,
                                   db: psycopg.Connection[Any]) -> None:
    record = producer.tasks["core.record"]
    now = datetime.now(timezone.utc)
    # Before any worker runs: jobs that will have expired, and one revoked.
    expired = [record.apply_async((1,), expires=0.2),
               record.apply_async((2,), expires=now + timedelta(milliseconds=200))]
    revoked = record.delay(3)
    revoked.revoke()
    wait_until(lambda: query(db, "SELECT bool_and(expires_at < now()) FROM jobs "
                                 "WHERE expires_at IS NOT NULL")[0][0],
               message="the expiries to pass")

    with workers() as started:
        started.append(start_worker(pg_dsn, schema, "-c", "4", "-Q", "q1"))
        delayed = [record.apply_async((10,), countdown=1),
                   record.apply_async((11,), eta=datetime.now(timezone.utc) + timedelta(
                       seconds=1.5)),
                   record.apply_async((12,), countdown=2.5)]
        run_at = dict(query(db, "SELECT id::text, run_at FROM jobs WHERE state = 'scheduled'"))
        assert set(run_at) == {r.id for r in delayed}
        flaky = producer.send_task("core.flaky", (20,))
        quick = producer.send_task("core.add", (2, 3), countdown=0.5)
        asked = time.monotonic()
        assert quick.get(timeout=20, interval=30) == 5
        # the notification woke get(), not the 30 s interval (slack for a loaded machine)
        assert time.monotonic() - asked < 15
        for result in delayed:
            assert result.get(timeout=10) == 2 * query(
                db, "SELECT n FROM executions WHERE job_id = %s", result.id)[0][0]
        with pytest.raises(ConnectionError, match="attempt 3"):
            flaky.get(timeout=20)
        for result in [*expired, revoked]:
            with pytest.raises(TaskRevokedError):
                result.get(timeout=10)
        assert_clean_exit(started[0], failed_tasks=1)
        log = started[0].output()

    started_at = dict(query(db, "SELECT job_id::text, started_at FROM executions"))
    for result in delayed:
        late = (started_at[result.id] - run_at[result.id]).total_seconds()
        assert 0 <= late < 1.0, f"started {late:.3f}s after its run_at"
    attempts = [t for (t,) in query(db, "SELECT started_at FROM executions WHERE n = 20 "
                                        "ORDER BY started_at")]
    assert len(attempts) == 3
    for retries, (before, after) in enumerate(zip(attempts, attempts[1:], strict=False)):
        gap = (after - before).total_seconds()
        assert 2**retries <= gap < 2**retries + 1.0, (retries, gap)  # retry_backoff=True
    assert query(db, "SELECT count(*) FROM executions WHERE n IN (1, 2, 3)") == [(0,)]
    assert query(db, "SELECT state, count(*) FROM results GROUP BY 1 ORDER BY 1") == [
        ("FAILURE", 1), ("REVOKED", 3), ("SUCCESS", 4)]
    # One INFO line per job, like Celery's worker.
    assert log.count(f"Task core.add[{quick.id}] succeeded in") == 1
    assert log.count(f"Task core.flaky[{flaky.id}] retry") == 2
    assert log.count(f"Task core.flaky[{flaky.id}] raised unexpected") == 1
