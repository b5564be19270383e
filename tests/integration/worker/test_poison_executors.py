"""No job can wedge an in-process worker's pool (issue 12, points 3 and 4).

Each hostile task runs ``-c`` times in each pool (enough to kill every executor before the
fix), then normal jobs must all finish: every job final, each run exactly once, and the
pool's free slots back to full with every executor alive.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgqueue import App, TimeLimitExceeded
from pgqueue.result import AsyncResult
from pgqueue.utils import uuid
from pgqueue.worker import Worker
from pgqueue.worker.pools.base import QueuePool
from pgqueue.worker.pools.threads import ThreadPool
from tests import hostile_tasks as poison
from tests.conftest import running_worker, wait_until

POOLS = ["threads", "processes", "asyncio", "solo"]


@pytest.fixture
def hostile_app(app: App, db: psycopg.Connection[Any]) -> Iterator[App]:
    poison.create_executions(db, app.schema)
    poison.register(app)
    yield app


def _executors_alive(worker: Worker) -> bool:
    pool = worker.pool
    if isinstance(pool, QueuePool):
        live = [e for e in pool._executors if e.thread is not None and e.thread.is_alive()]
        return len(live) == pool.size
    return True


def _pool_whole(worker: Worker) -> bool:
    return worker.pool.free_slots() == worker.pool.size and _executors_alive(worker)


@pytest.mark.parametrize("pool", POOLS)
def test_hostile_tasks_end_and_the_pool_goes_on(hostile_app: App, db: psycopg.Connection[Any],
                                               pool: str) -> None:
    app = hostile_app
    concurrency = 2
    with running_worker(app, pool=pool, concurrency=concurrency) as worker:
        hostile = {name: [app.send_task(name) for _ in range(worker.concurrency)]
                   for name in poison.HOSTILE}
        for name, results in hostile.items():
            state, fragment = poison.HOSTILE[name]
            for result in results:
                wait_until(result.ready, timeout=30, message=f"{name} final")
                assert result.state == state, (name, result.state)
                if fragment:
                    row = db.execute("SELECT error FROM results WHERE id = %s",
                                     (result.id,)).fetchone()
                    assert row is not None and fragment in row[0], (name, row)
        # the wedge of the issue: after -c hostile jobs, nothing ran
        echoes = [app.send_task("poison.echo", [i]) for i in range(4 * concurrency)]
        assert [r.get(timeout=30) for r in echoes] == list(range(4 * concurrency))
        wait_until(lambda: _pool_whole(worker), message="every slot free, every executor alive")
    ran = poison.executions(db, app.schema)
    everything = [r for rs in hostile.values() for r in rs] + echoes
    assert {r.id: ran.get(r.id) for r in everything} == {r.id: 1 for r in everything}
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def test_sys_exit_result_reads_back_as_an_error_not_an_exit(hostile_app: App) -> None:
    with running_worker(hostile_app, concurrency=1):
        result = hostile_app.send_task("poison.exit_3")
        with pytest.raises(RuntimeError, match=r"SystemExit\(3\) raised by the task"):
            result.get(timeout=20)
        picky = hostile_app.send_task("poison.not_reinstantiable")
        with pytest.raises(Exception, match="Picky"):
            picky.get(timeout=20)


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_a_dead_executor_gives_its_slot_back_and_is_replaced(
        hostile_app: App, pool: str, caplog: pytest.LogCaptureFixture) -> None:
    """Simulates a death the guards can't stop: handing in the outcome raises twice."""
    app = hostile_app
    with running_worker(app, pool=pool, concurrency=2) as worker:
        finished = worker.pool.context.finished
        doomed: dict[str, int] = {}

        def flaky_finished(outcome: Any) -> object:
            if outcome.job_id in doomed and doomed[outcome.job_id] < 2:
                doomed[outcome.job_id] += 1
                raise SystemExit("finisher hand-off failed")
            return finished(outcome)

        worker.pool.context.finished = flaky_finished
        job_id = uuid()
        doomed[job_id] = 0
        first = app.send_task("poison.echo", [1], task_id=job_id)
        with caplog.at_level(logging.ERROR, logger="pgqueue.worker"):
            wait_until(first.ready, timeout=20, message="the dead thread's job final")
        assert first.state == "FAILURE"
        assert "the thread running the task died (SystemExit)" in str(first.result)
        assert "Executor thread died" in caplog.text
        wait_until(lambda: _pool_whole(worker), message="slot back, thread replaced")
        echoes = [app.send_task("poison.echo", [i]) for i in range(6)]
        assert [r.get(timeout=20) for r in echoes] == list(range(6))


# -- hard time limit in the threads pool (issue 12, deliverable 7) -------------------------

def test_hard_time_limit_frees_the_thread_slot_at_once(
        app: App, db: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    ran: list[str] = []

    @app.task(time_limit=0.3, bind=True)
    def stuck(self: Any) -> str:
        ran.append(self.request.id)
        release.wait(60)  # blocked in C: the TimeLimitExceeded raised in it waits too
        return "late"

    @app.task
    def quick(i: int) -> int:
        return i

    try:
        with caplog.at_level(logging.WARNING, logger="pgqueue.worker"), \
                running_worker(app, concurrency=2) as worker:
            pool = worker.pool
            assert isinstance(pool, ThreadPool)
            first = [stuck.delay() for _ in range(2)]
            for result in first:
                with pytest.raises(TimeLimitExceeded):
                    result.get(timeout=10)
            wait_until(lambda: pool.abandoned == 2 and _pool_whole(worker),
                       message="both slots freed while their threads still run")
            assert "its thread is abandoned and may still be running" in caplog.text
            assert [quick.delay(i).get(timeout=10) for i in range(4)] == list(range(4))

            # past the cap (concurrency): the next stuck job keeps its slot
            third = stuck.delay()
            with pytest.raises(TimeLimitExceeded):
                third.get(timeout=10)
            wait_until(lambda: "slot stays busy until the task returns" in caplog.text,
                       message="the cap logged")
            assert pool.abandoned == 2 and pool.free_slots() == 1
            assert quick.delay(9).get(timeout=10) == 9  # the other slot still serves

            release.set()
            wait_until(lambda: pool.abandoned == 0 and _pool_whole(worker),
                       message="abandoned threads returned")
            assert "abandoned thread returned" in caplog.text
            live = [t for t in threading.enumerate() if t.name.startswith("pgqueue-exec")]
            assert len(live) == 2, live
    finally:
        release.set()
    assert sorted(ran) == sorted(r.id for r in [*first, third])  # each ran once
    states = db.execute("SELECT state, count(*) FROM results WHERE task LIKE '%stuck' "
                        "GROUP BY 1").fetchall()
    assert states == [("FAILURE", 3)]  # the late "late" outcomes were dropped


def test_hard_time_limit_stops_a_python_loop_in_a_thread(app: App) -> None:
    @app.task(time_limit=0.3)
    def spin() -> None:
        while True:
            pass

    with running_worker(app, concurrency=1) as worker:
        with pytest.raises(TimeLimitExceeded):
            spin.delay().get(timeout=10)
        # TimeLimitExceeded raised in the abandoned thread ends it
        wait_until(lambda: worker.pool.abandoned == 0 and _pool_whole(worker),
                   message="the spinning thread stopped")


# -- processes pool: a child that dies is noticed at once -----------------------------------

def test_a_child_calling_os_exit_is_noticed_and_its_job_retried_then_failed(
        hostile_app: App, db: psycopg.Connection[Any]) -> None:
    app = hostile_app
    with running_worker(app, pool="processes", concurrency=2) as worker:
        started = time.monotonic()
        result = app.send_task("poison.os_exit", max_retries=1)
        wait_until(result.ready, timeout=20, message="os._exit job final")
        # well under the 30 s lease (not after a lease, not at shutdown), with room for two
        # forks on a loaded machine
        assert time.monotonic() - started < 15
        assert result.state == "FAILURE"
        assert "Worker exited prematurely: exitcode 1" in str(result.result)
        echoes = [app.send_task("poison.echo", [i]) for i in range(4)]
        assert [r.get(timeout=20) for r in echoes] == list(range(4))
        wait_until(lambda: _pool_whole(worker), message="pool whole")
    assert poison.executions(db, app.schema)[result.id] == 2  # one retry, as documented
    assert AsyncResult(result.id, app=app).state == "FAILURE"
