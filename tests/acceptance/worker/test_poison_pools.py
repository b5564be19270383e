"""No job can wedge a real `pgqueue worker` (issue 12, points 3 and 4), in every pool.

Each hostile task of ``tests/hostile_tasks.py`` runs ``-c`` times (enough, before the fix, to
leave the worker running nothing); then normal jobs must all finish. Every job ends final,
each ran exactly once (prefork children killed mid-job excepted: their job runs again, as
docs/reliability.md promises), the worker stays alive and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

import psutil
import psycopg
import pytest
from psycopg import sql

from pgqueue import App
from tests import hostile_tasks as poison
from tests.acceptance.procs import WorkerProcess, workers
from tests.conftest import wait_until

pytestmark = pytest.mark.acceptance


@pytest.fixture
def conn(pg_dsn: str, schema: str) -> Any:
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        poison.create_executions(connection, schema)
        yield connection


def _start(pg_dsn: str, schema: str, procs: list[WorkerProcess], *args: str) -> WorkerProcess:
    w = WorkerProcess(pg_dsn, schema, "hostile", *args)
    procs.append(w)
    w.wait_ready()
    return w


def _children(w: WorkerProcess) -> list[psutil.Process]:
    """The pool's live children. A forked child runs the worker's command line; anything
    else (a short-lived ``ldconfig`` some import runs) is not one of them."""
    worker = psutil.Process(w.pid)
    found = []
    for child in worker.children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() != psutil.STATUS_ZOMBIE and child.cmdline() == worker.cmdline():
                found.append(child)
    return found


def _stop_cleanly(w: WorkerProcess) -> None:
    w.signal(signal.SIGTERM)
    assert w.wait(30) == 0, w.output()


@pytest.mark.parametrize("pool", ["threads", "processes", "asyncio", "solo"])
def test_hostile_tasks_never_wedge_a_worker(pg_dsn: str, schema: str, app: App,
                                            conn: psycopg.Connection[Any], pool: str) -> None:
    concurrency = 1 if pool == "solo" else 2
    with workers() as procs:
        w = _start(pg_dsn, schema, procs, "-P", pool, "-c", str(concurrency))
        hostile = {name: [app.send_task(name) for _ in range(concurrency)]
                   for name in poison.HOSTILE}
        for name, results in hostile.items():
            for result in results:
                wait_until(result.ready, timeout=30, message=f"{name} final")
                assert result.state == poison.HOSTILE[name][0], (name, result.state)
        row = conn.execute("SELECT error FROM results WHERE id = %s",
                           (hostile["poison.exit_3"][0].id,)).fetchone()
        assert row is not None
        assert "SystemExit(3) raised by the task: a task can't exit the worker" in row[0]
        echoes = [app.send_task("poison.echo", [i]) for i in range(5 * concurrency)]
        assert [r.get(timeout=30) for r in echoes] == list(range(5 * concurrency))
        assert w.proc.poll() is None, w.output()
        _stop_cleanly(w)
    ran = poison.executions(conn, schema)
    everything = [r for rs in hostile.values() for r in rs] + echoes
    assert {r.id: ran.get(r.id) for r in everything} == {r.id: 1 for r in everything}
    assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def test_a_killed_prefork_child_is_noticed_within_a_second_and_replaced(
        pg_dsn: str, schema: str, app: App, conn: psycopg.Connection[Any]) -> None:
    with workers() as procs:
        w = _start(pg_dsn, schema, procs, "-P", "processes", "-c", "4")
        wait_until(lambda: len(_children(w)) == 4, message="four children")
        # Jobs much longer than the notice allowed: a death noticed only when the job would
        # have ended fails, while a loaded machine still has seconds of slack.
        slow = [app.send_task("poison.slow", [8]) for _ in range(4)]
        running = wait_until(lambda: len(ran := conn.execute(
            "SELECT job_id::text, pid FROM executions").fetchall()) == 4 and ran,
            timeout=20, message="four slow jobs running")
        victim_job, victim_pid = running[-1]
        assert victim_pid in {c.pid for c in _children(w)}
        os.kill(victim_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(lambda: "Worker exited prematurely: exitcode -9" in w.output(),
                   timeout=4, message="the kill noticed")
        noticed = time.monotonic() - killed_at
        assert noticed < 4, f"noticed after {noticed:.2f}s"
        assert [r.get(timeout=40) for r in slow] == [8, 8, 8, 8]
        wait_until(lambda: len(_children(w)) == 4, message="the pool back to four children")
        _stop_cleanly(w)
    ran = poison.executions(conn, schema)
    # the killed job ran again (it had retries left); the other three once
    assert {r.id: ran[r.id] for r in slow} == {r.id: 2 if r.id == victim_job else 1
                                               for r in slow}


def test_a_child_calling_os_exit_is_retried_then_failed_at_once(
        pg_dsn: str, schema: str, app: App, conn: psycopg.Connection[Any]) -> None:
    with workers() as procs:
        w = _start(pg_dsn, schema, procs, "-P", "processes", "-c", "2")
        started = time.monotonic()
        result = app.send_task("poison.os_exit", max_retries=1)
        wait_until(result.ready, timeout=20, message="the os._exit job final")
        assert time.monotonic() - started < 15, "noticed late"  # the lease is 30 s
        assert result.state == "FAILURE"
        assert type(result.result).__name__ == "WorkerLostError"
        echoes = [app.send_task("poison.echo", [i]) for i in range(6)]
        assert [r.get(timeout=20) for r in echoes] == list(range(6))
        wait_until(lambda: len(_children(w)) == 2, message="two children again")
        _stop_cleanly(w)
    assert poison.executions(conn, schema)[result.id] == 2


def test_an_idle_prefork_child_that_dies_is_replaced(pg_dsn: str, schema: str, app: App,
                                                      conn: psycopg.Connection[Any]) -> None:
    with workers() as procs:
        w = _start(pg_dsn, schema, procs, "-P", "processes", "-c", "2")
        before = wait_until(lambda: len(c := _children(w)) == 2 and c, message="two children")
        os.kill(before[0].pid, signal.SIGKILL)
        wait_until(lambda: len(_children(w)) == 2 and before[0].pid not in
                   {c.pid for c in _children(w)}, timeout=15, message="the idle child replaced")
        wait_until(lambda: "died while idle" in w.output(), timeout=15, message="the death logged")
        echoes = [app.send_task("poison.echo", [i]) for i in range(4)]
        assert [r.get(timeout=20) for r in echoes] == list(range(4))
        _stop_cleanly(w)
