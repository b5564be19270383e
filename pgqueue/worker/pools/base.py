"""Execution pools: where claimed jobs run. The claim loop only asks them for free slots.

``threads`` (default) and ``solo`` live here; ``processes`` in
:mod:`pgqueue.worker.pools.processes`, ``asyncio`` in :mod:`pgqueue.worker.pools.aio`.

Time limits in the thread pools: ``soft_time_limit`` raises
:class:`SoftTimeLimitExceeded` inside the task (delivered between Python bytecodes, so a
task blocked inside one long C call sees it when the call returns). ``time_limit`` cannot
stop a thread: at the limit the job is recorded FAILURE with :class:`TimeLimitExceeded`,
its slot stays busy until the thread returns, and the late outcome is dropped (fenced).
Use ``-P processes`` when a hard limit must really stop the code.
"""

from __future__ import annotations

import ctypes
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pgqueue import states
from pgqueue.exceptions import SoftTimeLimitExceeded, TaskRevokedError, TimeLimitExceeded
from pgqueue.worker.execution import ClaimedJob, Outcome, execute, failure

if TYPE_CHECKING:
    from pgqueue.app import App


@dataclass
class JobContext:
    """What a pool needs from its worker to run jobs and hand back their outcomes."""

    app: App
    worker_id: str
    hostname: str
    started: Callable[[ClaimedJob], None]
    finished: Callable[[Outcome], object]
    time_limit: float | None = None
    soft_time_limit: float | None = None

    def limits(self, job: ClaimedJob) -> tuple[float | None, float | None]:
        """(hard, soft) limits in seconds: set when sending, else the task's (a producer
        that sends by name does not know them), else the worker's defaults."""
        task = self.app.tasks.get(job.task)
        return (job.options.get("time_limit") or getattr(task, "time_limit", None)
                or self.time_limit,
                job.options.get("soft_time_limit") or getattr(task, "soft_time_limit", None)
                or self.soft_time_limit)

    def run(self, job: ClaimedJob) -> Outcome:
        return execute(self.app, job, self.worker_id, self.hostname)


def time_limit_outcome(job: ClaimedJob, limit: float) -> Outcome:
    return failure(job, TimeLimitExceeded(f"Time limit ({limit}s) exceeded"),
                   with_traceback=False)


def terminated_outcome(job: ClaimedJob) -> Outcome:
    return Outcome(job.id, job.attempt, states.REVOKED, error="terminated by request")


class Pool(Protocol):
    size: int

    def start(self) -> None: ...
    def free_slots(self) -> int: ...
    def submit(self, job: ClaimedJob) -> None: ...
    def wait_for_slot(self, timeout: float) -> None: ...
    def take_unstarted(self) -> list[ClaimedJob]: ...
    def terminate(self, job_id: str) -> bool: ...
    def join(self, timeout: float) -> bool: ...
    def shutdown(self) -> None: ...


class Slots:
    """Counts busy slots; the claim loop waits on it when all are taken."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._busy = 0
        self._cond = threading.Condition()

    def free_slots(self) -> int:
        with self._cond:
            return self.size - self._busy

    def take(self, n: int = 1) -> None:
        with self._cond:
            self._busy += n

    def give(self, n: int = 1) -> None:
        with self._cond:
            self._busy -= n
            self._cond.notify_all()

    def wait_for_slot(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._busy < self.size, timeout)

    def join(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._busy == 0, timeout)


def raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> None:
    """Make ``exc_type`` raise in another thread at its next bytecode."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                               ctypes.py_object(exc_type))


class _Running:
    """The job a thread runs now; guards async exceptions against hitting the next job."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.job: ClaimedJob | None = None
        self.thread_id = 0

    def interrupt(self, job: ClaimedJob, exc_type: type[BaseException]) -> None:
        with self.lock:
            if self.job is job:
                raise_in_thread(self.thread_id, exc_type)


class QueuePool(Slots):
    """Slots fed by an in-memory queue that ``size`` threads of the worker drain."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self._queue: queue.SimpleQueue[ClaimedJob | None] = queue.SimpleQueue()

    def submit(self, job: ClaimedJob) -> None:
        self.take()
        self._queue.put(job)

    def take_unstarted(self) -> list[ClaimedJob]:
        taken = []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                taken.append(job)
        self.give(len(taken))
        return taken

    def shutdown(self) -> None:
        for _ in range(self.size):
            self._queue.put(None)


class ThreadPool(QueuePool):
    """``-P threads``: ``size`` threads share the process (I/O-bound work)."""

    def __init__(self, size: int, context: JobContext) -> None:
        super().__init__(size)
        self.context = context
        self._running: dict[str, _Running] = {}
        self._threads = [
            threading.Thread(target=self._work, name=f"pgqueue-exec-{i}", daemon=True)
            for i in range(size)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def terminate(self, job_id: str) -> bool:
        running = self._running.get(job_id)
        if running is None or running.job is None:
            return False
        job = running.job
        self.context.finished(terminated_outcome(job))
        running.interrupt(job, TaskRevokedError)
        return True

    def _work(self) -> None:
        slot = _Running()
        slot.thread_id = threading.get_ident()
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._run_one(job, slot)
            except (SoftTimeLimitExceeded, TaskRevokedError):
                pass  # an interrupt that landed just after the job returned
            finally:
                self.give()

    def _run_one(self, job: ClaimedJob, slot: _Running) -> None:
        hard, soft = self.context.limits(job)
        timers = []
        if soft:
            timers.append(threading.Timer(soft, slot.interrupt, (job, SoftTimeLimitExceeded)))
        if hard:
            timers.append(threading.Timer(
                hard, lambda: self.context.finished(time_limit_outcome(job, hard))))
        with slot.lock:
            slot.job = job
        self._running[job.id] = slot
        for timer in timers:
            timer.daemon = True
            timer.start()
        try:
            self.context.started(job)
            outcome = self.context.run(job)
        finally:
            with slot.lock:
                slot.job = None
            self._running.pop(job.id, None)
            for timer in timers:
                timer.cancel()
        self.context.finished(outcome)


class SoloPool(Slots):
    """``-P solo``: runs each job in the worker's main thread, one at a time."""

    def __init__(self, context: JobContext) -> None:
        super().__init__(1)
        self.context = context
        self._slot = _Running()

    def start(self) -> None:
        self._slot.thread_id = threading.get_ident()

    def submit(self, job: ClaimedJob) -> None:
        hard, soft = self.context.limits(job)
        limit = min(x for x in (hard, soft) if x) if (hard or soft) else None
        exc_type = SoftTimeLimitExceeded if soft and limit == soft else TimeLimitExceeded
        timer = threading.Timer(limit, self._slot.interrupt, (job, exc_type)) if limit else None
        with self._slot.lock:
            self._slot.job = job
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            self.context.started(job)
            outcome = self.context.run(job)
        except (SoftTimeLimitExceeded, TimeLimitExceeded, TaskRevokedError):
            return
        finally:
            with self._slot.lock:
                self._slot.job = None
            if timer is not None:
                timer.cancel()
        self.context.finished(outcome)

    def take_unstarted(self) -> list[ClaimedJob]:
        return []

    def terminate(self, job_id: str) -> bool:
        job = self._slot.job
        if job is None or job.id != job_id:
            return False
        self.context.finished(terminated_outcome(job))
        self._slot.interrupt(job, TaskRevokedError)
        return True

    def shutdown(self) -> None:
        pass
