"""``-P processes``: jobs run in forked child processes, one job per child at a time.

Each slot is a supervisor thread in the worker that owns one child. The supervisor hands
the child a job over a pipe and waits for the outcome until the job's hard time limit;
past it, the child is killed and replaced, and the job ends FAILURE with
:class:`TimeLimitExceeded` (``task_failure`` is sent from the worker's process, as
Celery's prefork parent sends it). A child that dies mid-job (crash, OOM kill,
``os._exit``) costs the job an attempt: it runs again while retries remain, else ends
FAILURE with :class:`WorkerLostError` (and ``task_failure``). Children are recycled after
``max_tasks_per_child`` jobs or when their peak memory passes ``max_memory_per_child``
(KiB, as in Celery).

A job starts when its child begins it, not when it is handed over: the child marks the
number of the job it begins, and when, in memory it shares with its supervisor (no
message, no wake-up of the worker: the supervisor reads it when it wakes anyway, at the
latest every ``_POLL`` seconds, and before it takes the outcome). Until then the job is
``reserved`` (``inspect reserved``), not started; its hard time limit runs from the
child's start, bounded by the same limit from the hand-over while it has not begun. A
child that dies before it begins the job (in ``worker_process_init``, say) costs the job
no attempt: a new child gets it, once.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import queue
import resource
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from pgqueue import signals, states
from pgqueue.exceptions import SoftTimeLimitExceeded, WorkerLostError
from pgqueue.utils import utcnow
from pgqueue.worker import aborts, hooks
from pgqueue.worker.execution import ClaimedJob, Outcome, crashed, failure, settle
from pgqueue.worker.pools.base import (
    Executor,
    JobContext,
    QueuePool,
    TerminateFirst,
    log_time_limit,
    terminated_outcome,
    time_limit_outcome,
    time_limit_reached,
)

logger = logging.getLogger("pgqueue.worker")

_POLL = 0.05


#: What a child shares with its supervisor: [how many jobs it began, the monotonic time
#: (system-wide on Linux) it began the last]. Written by the child only, time first.
Began = Any


def _child_main(conn: Connection, context: JobContext, max_tasks: int | None,
                max_memory_kib: int | None, inherited: list[Connection],
                began: Began) -> None:
    # The worker's ends of every pipe, this child's own included: held here, they would
    # hide the worker's death from this child (no EOF) and a sibling's from the worker.
    for end in inherited:
        end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    aborts.ask_database()  # no control listener in here

    def soft_limit(signum: int, frame: Any) -> None:
        raise SoftTimeLimitExceeded("Soft time limit exceeded")

    signal.signal(signal.SIGALRM, soft_limit)
    signals.worker_process_init.send_contained(sender=None)
    try:
        _serve_jobs(conn, context, max_tasks, max_memory_kib, began)
    finally:
        signals.worker_process_shutdown.send_contained(sender=None, pid=os.getpid(),
                                                       exitcode=0)


def _serve_jobs(conn: Connection, context: JobContext, max_tasks: int | None,
                max_memory_kib: int | None, began: Began) -> None:
    parent = os.getppid()
    done = 0
    while True:
        try:
            # Belt and braces: a worker killed with SIGKILL must not leave children behind.
            while not conn.poll(1.0):
                if os.getppid() != parent:
                    return
            # (job, soft limit): the limits are the worker's (time_limit may change them)
            item: tuple[ClaimedJob, float | None] | None = conn.recv()
        except (EOFError, OSError):
            return
        if item is None:
            return
        job, soft = item
        escaped = False
        began[1] = time.monotonic()
        began[0] = done + 1  # this job has begun (read by the supervisor)
        try:
            if soft:
                signal.setitimer(signal.ITIMER_REAL, soft)
            outcome = context.run(job)
        except SoftTimeLimitExceeded as exc:  # landed outside the task body
            outcome = failure(job, exc)
        except BaseException as exc:  # nothing a job does may end this loop
            outcome, escaped = crashed(job, exc), True
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            # Here, not in the worker: a child is never stopped but killed, so what it
            # returns stands (the line is the run's, as in Celery's children).
            outcome = settle(job, outcome)
        except BaseException as exc:  # a log handler that raises
            outcome, escaped = crashed(job, exc), True
        done += 1
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        recycle = bool(escaped or (max_tasks and done >= max_tasks)
                       or (max_memory_kib and peak_kib > max_memory_kib))
        try:
            conn.send((outcome, recycle))
        except OSError:
            return
        except Exception as exc:  # the outcome does not pickle; nothing was written yet
            conn.send((crashed(job, exc, "the outcome could not be handed to the worker"),
                       recycle))
        if recycle:
            return


@contextmanager
def _no_record_half_written() -> Iterator[None]:
    """Hold every logging handler across a fork. Python gives the child fresh handler
    locks, but not the stream's own lock: a thread caught writing a record at the fork
    would leave it held, and the child would hang on its first log line."""
    manager = logging.getLogger().manager
    loggers = [logging.getLogger(), *(each for each in list(manager.loggerDict.values())
                                      if isinstance(each, logging.Logger))]
    handlers = list({id(h): h for each in loggers for h in each.handlers}.values())
    held = [h for h in handlers if h.lock is not None and h.lock.acquire(timeout=0.5)]
    try:
        yield
    finally:
        for handler in reversed(held):
            handler.lock.release()  # type: ignore[union-attr]


class _Child:
    def __init__(self, process: BaseProcess, conn: Connection, began: Began,
                 generation: int = 0) -> None:
        self.process = process
        self.conn = conn
        self.began = began
        self.sent = 0  # jobs handed to it: the number of the one it runs now
        self.generation = generation  # the pool's restarts when it was forked

    def hand(self, job: ClaimedJob, soft: float | None) -> int:
        """Send ``job`` to the child; its number, for :meth:`begun`."""
        self.conn.send((job, soft))
        self.sent += 1
        return self.sent

    def begun(self, number: int) -> float | None:
        """When (monotonic) the child began job ``number``; None if it has not yet."""
        if self.began[0] < number:
            return None
        return float(self.began[1])

    def kill(self) -> None:
        if self.process.is_alive():
            os.kill(self.process.pid or 0, signal.SIGKILL)
        self.reap(5)
        self.conn.close()

    def reap(self, timeout: float) -> bool:
        """Wait until the child has exited, polling its pid: ``join()`` waits on the exit
        sentinel, which stays open while a process the task forked lives on."""
        deadline = time.monotonic() + timeout
        while self.process.is_alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True


class ProcessPool(QueuePool):
    thread_name = "pgqueue-child"

    def __init__(self, size: int, context: JobContext, max_tasks_per_child: int | None = None,
                 max_memory_per_child: int | None = None) -> None:
        super().__init__(size, context)
        self.max_tasks = max_tasks_per_child
        self.max_memory = max_memory_per_child
        self._mp = multiprocessing.get_context("fork")
        #: Jobs asked to terminate: taken by the supervisor that runs (or is about to
        #: run) the job; one whose job ended first lapses (see TerminateFirst).
        self._terminate = TerminateFirst()
        self._lock = threading.Lock()
        self._parent_ends: set[Connection] = set()
        self._generation = 0  # restarts asked (pool_restart)
        self._children: set[_Child] = set()

    def restart(self) -> None:
        """Replace every child: idle ones within a second, busy ones after their job
        (``pool_restart``; modules imported or reloaded before are what they fork with)."""
        with self._lock:
            self._generation += 1

    def child_pids(self) -> list[int]:
        with self._lock:
            return sorted(c.process.pid or 0 for c in self._children)

    def terminate(self, job_id: str) -> bool:
        with self._lock:
            self._terminate.add(job_id)
        return True

    def _spawn(self) -> _Child:
        # One fork at a time: a child forked while another supervisor holds a new pipe
        # open would keep that pipe's child end (and exit sentinel) alive.
        with self._lock:
            parent_end, child_end = self._mp.Pipe()
            self._parent_ends.add(parent_end)
            began = self._mp.RawArray(ctypes.c_double, 2)
            process = self._mp.Process(
                target=_child_main, name="pgqueue-child", daemon=True,
                args=(child_end, self.context, self.max_tasks, self.max_memory,
                      list(self._parent_ends), began))
            try:
                with _no_record_half_written():
                    process.start()
            finally:
                child_end.close()
            child = _Child(process, parent_end, began, self._generation)
            self._children.add(child)
        return child

    def _kill(self, child: _Child) -> None:
        child.kill()
        with self._lock:
            self._parent_ends.discard(child.conn)
            self._children.discard(child)

    def _renew(self, child: _Child) -> _Child:
        """The child, or a new one when a restart was asked since it was forked."""
        if child.generation == self._generation:
            return child
        logger.info("Restarting child %s (pool_restart)", child.process.pid)
        with suppress(OSError):
            child.conn.send(None)
        child.reap(5)
        return self._replace(child)

    def _replace(self, child: _Child) -> _Child:
        self._kill(child)
        return self._spawn()

    def _serve(self, executor: Executor) -> None:
        """The supervisor of one child: hands it jobs, and replaces it when it dies."""
        child = self._spawn()
        try:
            while True:
                try:
                    job = self._next(executor, timeout=1.0)
                except queue.Empty:
                    if not child.process.is_alive():
                        logger.error("Child %s died while idle (exitcode %s); replacing it",
                                     child.process.pid, child.process.exitcode)
                        child = self._replace(child)
                    child = self._renew(child)
                    continue
                if job is None:
                    child.conn.send(None)
                    child.reap(5)
                    return
                try:
                    child = self._run_one(self._renew(child), job)
                except BaseException as exc:  # the child's state is unknown: replace it
                    self.context.finished(crashed(job, exc))
                    child = self._replace(child)
                self._release(executor, job)
        finally:
            self._kill(child)

    def _run_one(self, child: _Child, job: ClaimedJob) -> _Child:
        if self._terminated(job):  # before its child has it: nothing to kill
            self.context.finished(terminated_outcome(self.context, job))
            return child
        if not child.process.is_alive():
            child = self._replace(child)
        hard, soft = self.context.limits(job)
        # Until the child begins the job, the limit runs from the hand-over: a child that
        # never gets to it (stuck in worker_process_init) holds the slot no longer.
        deadline = time.monotonic() + hard if hard else None
        child, number = self._hand(child, job, soft)
        started = handed_again = False
        while True:
            # The exit sentinel wakes us when the child dies, with or without EOF; the pid
            # is polled too, for a child whose forked process holds both open.
            ready = wait([child.conn, child.process.sentinel], _POLL) \
                or not child.process.is_alive()
            if not started:
                began = child.begun(number)
                if began is not None:  # before its outcome: the child wrote it first
                    started = True
                    self.context.started(job)
                    deadline = began + hard if hard else None
            if ready:
                try:
                    if not child.conn.poll():
                        raise EOFError
                    outcome, recycle = child.conn.recv()
                except (EOFError, OSError):
                    if not started and not handed_again:
                        # Nothing of the job ran: a new child gets it, at no attempt's
                        # cost (once: a job that kills children before they begin it
                        # is lost as any other).
                        handed_again = True
                        logger.error("Child %s died before it began %s[%s] (exitcode %s); "
                                     "handing the job to a new child", child.process.pid,
                                     job.display, job.id, child.process.exitcode)
                        deadline = time.monotonic() + hard if hard else None
                        child, number = self._hand(self._replace(child), job, soft)
                        continue
                    self._lost(job, child)
                    return self._replace(child)
                self.context.finished(outcome)
                if recycle:
                    child.reap(5)
                    return self._replace(child)
                return child
            if deadline is not None and time.monotonic() > deadline:
                assert hard is not None
                log_time_limit(job, hard, f"killing child {child.process.pid}")
                # Recorded first: nothing that waits for the child may delay the outcome.
                self.context.finished(time_limit_outcome(job, hard))
                self._kill(child)
                time_limit_reached(self.context, job, hard)
                return self._spawn()
            if self._terminated(job):
                self.context.finished(terminated_outcome(self.context, job, signal.SIGKILL))
                self._kill(child)
                return self._spawn()

    def _hand(self, child: _Child, job: ClaimedJob, soft: float | None
              ) -> tuple[_Child, int]:
        """Send ``job`` to ``child`` (to a new child if its pipe is gone): the child that
        has it, and the job's number there (:meth:`_Child.begun`)."""
        try:
            return child, child.hand(job, soft)
        except OSError:
            child = self._replace(child)
            return child, child.hand(job, soft)

    def _terminated(self, job: ClaimedJob) -> bool:
        with self._lock:
            return self._terminate.take(job.id)

    def _lost(self, job: ClaimedJob, child: _Child) -> None:
        """The child died with the job: retry while retries remain, else WorkerLostError
        (and ``task_failure``, as Celery's parent sends it for a child whose hooks died
        with it)."""
        child.reap(1)
        code = child.process.exitcode
        error = WorkerLostError(f"Worker exited prematurely: exitcode {code} "
                                f"(job {job.id}, attempt {job.attempt})")
        logger.error("Task %s[%s] raised %s; replacing child %s", job.display, job.id, error,
                     child.process.pid)
        if job.max_retries is None or job.attempt <= job.max_retries:
            self.context.finished(Outcome(job.id, job.attempt, states.RETRY,
                                          error=f"WorkerLostError: {error}", run_at=utcnow()))
            return
        self.context.finished(failure(job, error, with_traceback=False))
        hooks.failed_outside(self.context.app.tasks.get(job.task), job, error)
