"""A prefork child is forked from a worker whose other threads keep running: whatever lock
one of them holds at that instant stays held, for good, in the child. These tests make
another thread hold pgqueue's locks at every fork, and the children must still run jobs
that take them (an abort check, a progress update, a signal receiver)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import App, signals
from pgqueue.contrib.abortable import AbortableTask
from pgqueue.worker import aborts
from tests.conftest import running_worker, wait_until


class LockHolder:
    """Holds the given locks in a thread of its own while the process forks."""

    def __init__(self, locks: list[Any]) -> None:
        self.locks = locks
        self.forks = 0
        self._hold = threading.Event()
        self._held = threading.Event()
        self._release = threading.Event()
        self._released = threading.Event()

    def before_fork(self) -> None:
        self._release.clear()
        self._released.clear()
        self._held.clear()
        threading.Thread(target=self._run, daemon=True).start()
        assert self._held.wait(10), "the holder could not take the locks"
        self.forks += 1

    def after_fork_in_parent(self) -> None:
        self._release.set()
        self._released.wait(10)

    def _run(self) -> None:
        with ExitStack() as stack:
            for lock in self.locks:
                stack.enter_context(lock)
            self._held.set()
            self._release.wait(10)
        self._released.set()


_armed: LockHolder | None = None


def _before() -> None:
    if _armed is not None:
        _armed.before_fork()


def _after_in_parent() -> None:
    if _armed is not None:
        _armed.after_fork_in_parent()


os.register_at_fork(before=_before, after_in_parent=_after_in_parent)


@pytest.fixture
def locks_held_at_fork(app: App) -> Iterator[LockHolder]:
    global _armed
    holder = LockHolder([aborts._lock, signals.worker_process_init._lock,
                         signals.task_success._lock, app._lock])
    _armed = holder
    try:
        yield holder
    finally:
        _armed = None


def test_children_forked_while_locks_are_held_run_jobs(
        app: App, db: psycopg.Connection[Any], locks_held_at_fork: LockHolder) -> None:
    @app.task(base=AbortableTask, bind=True)
    def reports(self: Any, n: int) -> int:
        # Each of these takes a lock that the parent's other thread held at the fork:
        # the abort flag (aborts), the app's pool (app), a receiver list (signals).
        self.update_state(state="PROGRESS", meta={"n": n})
        signals.task_success.connect(lambda **kw: None, weak=False, dispatch_uid="fork-test")
        assert not self.is_aborted()
        return n * 2

    with running_worker(app, pool="processes", concurrency=2,
                        max_tasks_per_child=1):  # a fork after every job, too
        handles = [reports.delay(n) for n in range(6)]
        assert [h.get(timeout=60) for h in handles] == [n * 2 for n in range(6)]
    assert locks_held_at_fork.forks >= 6


def test_a_thread_logging_at_every_fork_does_not_hang_the_children(
        app: App, db: psycopg.Connection[Any], tmp_path: Path) -> None:
    """The stream's own lock is not reset in a child: the pool holds the handlers while
    it forks, so no record is half-written at that instant."""
    import logging

    stop = threading.Event()
    logger = logging.getLogger("pgqueue.worker")
    previous = logger.level
    logger.setLevel(logging.INFO)
    # A real file: its buffered writer has the lock that a fork can catch held.
    handler = logging.StreamHandler(open(tmp_path / "worker.log", "w"))  # noqa: SIM115
    logger.addHandler(handler)

    def chatter() -> None:
        while not stop.is_set():
            logger.info("a line written while children are forked")

    @app.task
    def double(n: int) -> int:
        logger.warning("child logs a line for job %s", n)
        return n * 2

    thread = threading.Thread(target=chatter, daemon=True)
    thread.start()
    try:
        with running_worker(app, pool="processes", concurrency=2, max_tasks_per_child=1):
            handles = [double.delay(n) for n in range(20)]
            wait_until(lambda: all(h.ready() for h in handles), timeout=90,
                       message="every job to end")
            assert [h.get(timeout=1) for h in handles] == [n * 2 for n in range(20)]
    finally:
        stop.set()
        thread.join(10)
        logger.setLevel(previous)
        logger.removeHandler(handler)
        handler.close()
