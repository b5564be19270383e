"""Events cost nothing when nobody listens: receivers announce themselves in
event_listeners (0012) and `pgqueue worker -E` (and task-sent) publish only while a
fresh receiver exists.

What the events channel carries is observed by a raw LISTEN connection that is NOT
registered as a receiver. NOTIFYs reach it in commit order and a worker's dispatcher
sends in order, so when a receiver registers and the first event the raw connection
gets from the worker is a heartbeat, nothing was published before it."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgqueue import App
from pgqueue.db import queries
from pgqueue.event_listeners import FRESH, REFRESH
from pgqueue.events import encode
from tests.acceptance.procs import WorkerProcess, pgqueue_command
from tests.conftest import wait_until

CORE = "tests.acceptance.apps.core_app"


class Tap:
    """Every payload on the events channel, read by an unregistered LISTEN."""

    def __init__(self, app: App) -> None:
        self.conn = psycopg.connect(app.dsn, autocommit=True)
        self.conn.execute(queries.listen(app.queries.events_channel))
        self.events: list[dict[str, Any]] = []
        self.last = time.monotonic()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for note in self.conn.notifies(timeout=0.2):
                self.events.append(json.loads(note.payload))
                self.last = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.conn.close()


@pytest.fixture
def tap(app: App) -> Iterator[Tap]:
    found = Tap(app)
    yield found
    found.close()


@pytest.fixture
def worker(pg_dsn: str, schema: str) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(pg_dsn, schema, CORE, "-E", "-n", "quiet@test", "-c", "2")
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


class Receiving:
    """A registered app.events.Receiver in a thread."""

    def __init__(self, app: App) -> None:
        self.events: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.app = app
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for event in self.app.events.Receiver().itercapture(timeout=60):
            self.events.append(event)
            if self.stop.is_set():
                return

    def close(self) -> None:
        """Stop: a marker wakes the receiver, which returns and removes its row."""
        self.stop.set()
        dispatcher = self.app.events.Dispatcher("tests@marker")
        wait_until(lambda: (dispatcher.flush([encode({"type": "stop"})]),
                            self.thread.join(0.5), not self.thread.is_alive())[2], 20,
                   message="receiver stopped")
        dispatcher.stop()

    def types_of(self, uuid: str) -> list[str]:
        return [e["type"] for e in self.events if e.get("uuid") == uuid]


def fresh(app: App) -> bool:
    """Whether a receiver counts now, asked of the database (no cache)."""
    return bool(app.execute("event_listeners_fresh", {"fresh": FRESH})[0][0])


def run_jobs(app: App, count: int) -> list[str]:
    results = [app.send_task("core.add", args=(i, i)) for i in range(count)]
    assert [r.get(timeout=60) for r in results] == [2 * i for i in range(count)]
    return [r.id for r in results]


def published_before_receiver(app: App, tap: Tap, job_ids: list[str]) -> Receiving:
    """Register a receiver; return it once the worker publishes, after checking that the
    raw connection got nothing from the worker (no job's event) before that."""
    tap.events.clear()
    receiving = Receiving(app)
    started = time.monotonic()
    wait_until(lambda: tap.events, 15, message="the worker publishing for a receiver")
    first = tap.events[0]
    assert first["type"] == "worker-heartbeat", tap.events[:5]
    assert not {e.get("uuid") for e in tap.events} & set(job_ids)
    # heartbeat every 2 s, publishers look every second: a few seconds under load
    assert time.monotonic() - started < 10
    return receiving


def test_no_listener_no_notify_then_a_receiver_gets_events(
        app: App, tap: Tap, worker: WorkerProcess) -> None:
    job_ids = run_jobs(app, 20)
    assert fresh(app) is False
    receiving = published_before_receiver(app, tap, job_ids)
    started = time.monotonic()
    (late,) = run_jobs(app, 1)
    wait_until(lambda: "task-succeeded" in receiving.types_of(late), 15,
               message="task events for a receiver")
    assert receiving.types_of(late) == ["task-received", "task-started", "task-succeeded"]
    assert time.monotonic() - started < 10
    receiving.close()


def test_killed_receiver_stops_counting(app: App, tap: Tap, worker: WorkerProcess,
                                        pg_dsn: str, schema: str) -> None:
    env = {"PGQUEUE_DSN": pg_dsn, "PGQUEUE_SCHEMA": schema}
    import os

    tail = subprocess.Popen([*pgqueue_command(), "events", "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **env})
    try:
        wait_until(lambda: fresh(app), 30, interval=0.1, message="`pgqueue events` registered")
        wait_until(lambda: any(e["type"] == "worker-heartbeat" for e in tap.events), 15,
                   message="the worker publishing for `pgqueue events`")
        tail.send_signal(signal.SIGKILL)
        tail.wait(10)
        killed = time.monotonic()
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait(10)
    wait_until(lambda: not fresh(app), FRESH + 15, interval=0.2,
               message="the killed receiver to stop counting")
    assert time.monotonic() - killed > FRESH - REFRESH - 1  # it aged out, nobody removed it
    with psycopg.connect(pg_dsn) as conn:
        left = conn.execute(f'SELECT count(*) FROM "{schema}".event_listeners').fetchone()
    assert left == (1,)
    # The worker stops too: no heartbeat for longer than a heartbeat and a look...
    wait_until(lambda: time.monotonic() - tap.last > 4, 20, interval=0.2,
               message="the worker falling silent")
    # ... and jobs run after that publish nothing until a receiver comes.
    job_ids = run_jobs(app, 5)
    published_before_receiver(app, tap, job_ids).close()


def test_garbage_listener_rows_neither_count_nor_crash_a_worker(
        app: App, tap: Tap, pg_dsn: str, schema: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        table = f'"{schema}".event_listeners'
        conn.execute(f"INSERT INTO {table} (id, node, seen_at) VALUES "
                     "('old', 'x', '1970-01-01'), ('future', 'x', now() + interval '1 year'),"
                     "('inf', '', 'infinity'), ('-inf', '', '-infinity'),"
                     "(repeat('z', 5000), repeat('y', 5000), now() - interval '1 day')")
        with pytest.raises(psycopg.errors.NotNullViolation):
            conn.execute(f"INSERT INTO {table} (id, seen_at) VALUES ('null', NULL)")
    assert fresh(app) is False
    proc = WorkerProcess(pg_dsn, schema, CORE, "-E", "-n", "quiet@test")
    try:
        proc.wait_ready()
        job_ids = run_jobs(app, 5)
        assert proc.proc.poll() is None
        receiving = published_before_receiver(app, tap, job_ids)
        receiving.close()
        assert "Traceback" not in proc.output()
    finally:
        proc.stop()
    with psycopg.connect(pg_dsn) as conn:  # the receiver swept the garbage, then its row
        assert conn.execute(f"SELECT id FROM {table}").fetchall() == []


def test_receiver_removes_its_row_when_it_stops(app: App) -> None:
    seen: list[bool] = []
    receiver = app.events.Receiver()
    for _ in receiver.itercapture(timeout=0.3):
        pass
    seen.append(fresh(app))
    gen = receiver.itercapture(timeout=30)
    dispatcher = app.events.Dispatcher("tests@marker")
    flusher = threading.Timer(0.5, lambda: dispatcher.flush([encode({"type": "m"})]))
    flusher.start()
    assert next(gen)["type"] == "m"
    seen.append(fresh(app))
    gen.close()
    seen.append(fresh(app))
    dispatcher.stop()
    assert seen == [False, True, False]


def test_task_sent_only_while_someone_listens(app: App, tap: Tap) -> None:
    app.conf.task_send_sent_event = True
    marker = app.events.Dispatcher("tests@marker")
    quiet = app.send_task("core.add", args=(1, 1))
    marker.flush([encode({"type": "m1"})])  # NOTIFYs arrive in commit order
    wait_until(lambda: any(e["type"] == "m1" for e in tap.events), 10, message="marker")
    assert [e["type"] for e in tap.events] == ["m1"]
    receiving = Receiving(app)
    wait_until(lambda: fresh(app), 10, message="receiver registered")
    time_limit = time.monotonic() + 15
    loud = None
    while loud is None or "task-sent" not in receiving.types_of(loud):
        assert time.monotonic() < time_limit, "task-sent never came"
        loud = app.send_task("core.add", args=(2, 2)).id  # a producer looks once a second
        time.sleep(0.2)
    assert quiet.id not in {e.get("uuid") for e in tap.events}
    receiving.close()
    marker.stop()


def test_every_group_role_may_receive_and_a_bare_login_gets_one_line(
        pg_dsn: str, schema: str) -> None:
    from tests.integration.ops.helpers import pgqueue
    from tests.login_roles import login_roles, with_group_roles

    groups = with_group_roles(pg_dsn, schema)
    with login_roles(pg_dsn) as make:
        for kind in ("producer", "worker", "control", "reader"):
            app = App("r", dsn=make(groups[kind]), schema=schema, set_as_current=False)
            try:
                gen = app.events.Receiver().itercapture(timeout=30)
                marker = app.events.Dispatcher("tests@marker")
                threading.Timer(0.3, lambda d=marker: d.flush([encode({"type": "m"})])).start()
                assert next(gen)["type"] == "m"
                assert fresh(app), kind
                gen.close()
                assert not fresh(app), kind
                marker.stop()
            finally:
                app.close()
        bare = pgqueue("events", "--timeout", "1", dsn=make(), schema=schema)
    assert bare.returncode == 1
    assert "permission denied" in bare.stderr and "Traceback" not in bare.stderr
    assert len(bare.stderr.strip().splitlines()) == 1, bare.stderr
