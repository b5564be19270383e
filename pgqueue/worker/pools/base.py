"""What every execution pool shares: the contract the claim loop sees (:class:`Pool`),
slot counting, and the queue-fed executor threads of the threads and processes pools.

The pools: ``threads`` (default, :mod:`.threads`), ``solo`` (:mod:`.solo`), ``processes``
(:mod:`.processes`), ``asyncio`` (:mod:`.aio`).

Whatever a task raises (``SystemExit``, ``KeyboardInterrupt`` included) or whatever
escapes while its outcome is built, the job ends with an outcome and the executor goes
on; see :func:`pgqueue.worker.execution.crashed`.

Time limits in the thread pools: ``soft_time_limit`` raises
:class:`SoftTimeLimitExceeded` inside the task (delivered between Python bytecodes, so a
task blocked inside one long C call sees it when the call returns). ``time_limit`` cannot
stop a thread: at the limit the job is recorded FAILURE with :class:`TimeLimitExceeded`,
the slot is freed at once for a new thread, and :class:`TimeLimitExceeded` is raised in
the old thread at its next bytecode. Until its task returns (never, if it is stuck in C
code) that thread **may still be running**: it is counted apart ("abandoned", in the
log), and its late outcome is dropped (fenced). At most ``concurrency`` threads are
abandoned at once; past that, a job over its limit keeps its slot until it returns.
Use ``-P processes`` when a hard limit must really stop the code.

In every pool, a job stopped at its hard time limit is logged at ERROR and sends
``task_failure`` once, with :class:`TimeLimitExceeded`, from the worker's process as the
pool records it (:func:`time_limit_reached`), as Celery's prefork parent does; what the
task does after is logged at INFO and counts nowhere (:func:`settle_run`).
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pgqueue import states
from pgqueue.exceptions import TimeLimitExceeded
from pgqueue.worker import hooks
from pgqueue.worker.execution import (
    ClaimedJob,
    Outcome,
    Terminated,
    crashed,
    execute,
    failure,
    make_request,
    safe_str,
    settle,
)
from pgqueue.worker.holdings import EARLY_MAX, EARLY_TTL

if TYPE_CHECKING:
    from pgqueue.app import App

logger = logging.getLogger("pgqueue.worker")


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


def _time_limit_error(limit: float) -> TimeLimitExceeded:
    return TimeLimitExceeded(f"Time limit ({limit}s) exceeded")


def time_limit_outcome(job: ClaimedJob, limit: float) -> Outcome:
    return failure(job, _time_limit_error(limit), with_traceback=False)


def time_limit_reached(context: JobContext, job: ClaimedJob, limit: float) -> None:
    """``task_failure`` (with :class:`TimeLimitExceeded`) for a job its pool recorded
    FAILURE at its hard time limit and interrupted: sent once, where the pool stopped it
    (the worker's process, never the killed child), whatever the task does after."""
    hooks.failed_outside(context.app.tasks.get(job.task), job, _time_limit_error(limit))


def log_time_limit(job: ClaimedJob, limit: float, action: str) -> None:
    logger.error("Task %s[%s] exceeded its time limit (%.1fs): %s", job.display, job.id,
                 limit, action)


def ended_after_stop(job: ClaimedJob, state: str) -> None:
    """A run ``state`` of a job its pool stopped (and recorded) before: dropped, counted
    nowhere; logged at INFO, since a task that swallows its interruption is no fault of
    the worker's."""
    logger.info("Task %s[%s] ended %s after it was stopped; it stays %s as recorded then",
                job.display, job.id, state, job.stopped)


def settle_run(context: JobContext, job: ClaimedJob, outcome: Outcome) -> None:
    """Hand over what a run returned, once ``job.stopped`` is final: logged (the one line
    per job) and recorded, or, for a job its pool stopped first, dropped with an INFO line
    and no line of an ending it did not have."""
    if job.stopped is not None:
        ended_after_stop(job, outcome.state)
        return
    context.finished(settle(job, outcome))


def terminated_outcome(context: JobContext, job: ClaimedJob,
                       signum: int | None = None) -> Outcome:
    """REVOKED for a job terminated on request; sends ``task_revoked`` (in the worker's
    process, as Celery does for prefork)."""
    request = make_request(job, context.worker_id, context.hostname)
    hooks.revoked(context.app.tasks.get(job.task), request, terminated=True, signum=signum)
    logger.info("Task %s[%s] terminated by request", job.display, job.id)
    return Outcome(job.id, job.attempt, states.REVOKED, error="terminated by request")


def discarded_outcome(context: JobContext, job: ClaimedJob) -> Outcome:
    """REVOKED, without running, for a job claimed again (a retry, a rescue) after it was
    revoked while an earlier attempt ran (``options.revoked``, set by the revoke in the
    row); sends ``task_revoked`` (not terminated), as Celery's worker does when it
    discards a revoked id it receives."""
    request = make_request(job, context.worker_id, context.hostname)
    hooks.revoked(context.app.tasks.get(job.task), request)
    logger.info("Discarding revoked task: %s[%s]", job.display, job.id)
    return Outcome(job.id, job.attempt, states.REVOKED, error="revoked by request",
                   logged=True)


class TerminateFirst:
    """Terminates asked for jobs the worker holds but its pool has not begun: the job
    is then never run. A request is kept ``ttl`` seconds (the gap it covers is the claim
    loop's, from the claim to the hand-over: the same as the worker's own memory of
    requests for jobs it does not hold yet, ``Holdings``), and at most ``most`` are kept.

    One whose job ended before it came (it raced the job's end) lapses then: until it
    does, a retry of that job handed to this pool is terminated too. That is only a
    fallback: the revoke flags the row of a started job (``options.revoked``), and the
    worker that claims any later attempt, whichever and whenever, ends it REVOKED
    without running it (:func:`discarded_outcome`), as Celery's workers discard a revoked
    id. Not thread-safe: the pool calls it under the lock that orders its begins and
    terminates.
    """

    def __init__(self, ttl: float = EARLY_TTL, most: int = EARLY_MAX) -> None:
        self.ttl = ttl
        self.most = most
        #: id -> when asked, oldest first, so that lapsed requests are dropped from the
        #: front: each costs O(1), and memory stays bounded whatever the ids.
        self._asked: OrderedDict[str, float] = OrderedDict()

    def add(self, job_id: str) -> None:
        now = time.monotonic()
        self._asked[job_id] = now
        self._asked.move_to_end(job_id)
        self._lapse(now)

    def take(self, job_id: str) -> bool:
        """Whether ``job_id``, about to begin, was asked to terminate (and forget it)."""
        if not self._asked:
            return False
        self._lapse(time.monotonic())
        return self._asked.pop(job_id, None) is not None

    def _lapse(self, now: float) -> None:
        asked = self._asked
        while asked:
            oldest, at = next(iter(asked.items()))
            if now - at < self.ttl and len(asked) <= self.most:
                return
            del asked[oldest]

    def __len__(self) -> int:
        return len(self._asked)


class Pool(Protocol):
    size: int
    #: Threads and coroutines the pool stopped (hard time limit, terminate) that went on:
    #: no longer counted in ``size``, maybe running still.
    abandoned: int

    def start(self) -> None: ...
    def free_slots(self) -> int: ...
    def submit(self, job: ClaimedJob) -> None: ...
    def wait_for_slot(self, timeout: float) -> None: ...
    def take_unstarted(self) -> list[ClaimedJob]: ...
    def terminate(self, job_id: str) -> bool: ...
    def join(self, timeout: float) -> bool: ...
    def shutdown(self) -> None: ...
    def resize(self, size: int) -> None: ...


class Slots:
    """Counts busy slots; the claim loop waits on it when all are taken."""

    abandoned = 0

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

    def resize(self, size: int) -> None:
        """Run up to ``size`` jobs at once from now on (remote control, autoscale). Jobs
        running past a smaller size go on; no new one starts until they are below it."""
        if size < 1:
            raise ValueError(f"a pool keeps at least 1 slot, not {size}")
        with self._cond:
            self.size = size
            self._cond.notify_all()


_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc


def raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> None:
    """Make ``exc_type`` raise in another thread at its next bytecode."""
    _set_async_exc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type))


class RunningJob:
    """The job a thread runs now; guards async exceptions against hitting the next job."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.job: ClaimedJob | None = None
        self.thread_id = 0
        self._interrupted = False

    def begin(self, job: ClaimedJob) -> None:
        with self.lock:
            self.job = job

    def stop(self, job: ClaimedJob, state: str) -> bool:
        """Mark ``job`` ended by the pool as ``state``, whose outcome the caller records
        next; False if it ended meanwhile or was stopped already. After :meth:`end`,
        ``job.stopped`` says for good whether the pool or the run settles the job."""
        with self.lock:
            if self.job is not job or job.stopped is not None:
                return False
            job.stopped = state
            return True

    def interrupt(self, job: ClaimedJob, exc_type: type[BaseException]) -> None:
        with self.lock:
            if self.job is job:
                self._interrupted = True
                raise_in_thread(self.thread_id, exc_type)

    def end(self) -> None:
        """No interrupt is sent from now on, and one sent but not raised yet is withdrawn:
        it would land in the pool's own code, or in the next job."""
        with self.lock:
            self.job = None
            if self._interrupted:
                self._interrupted = False
                _set_async_exc(ctypes.c_ulong(self.thread_id), None)


class Executor(RunningJob):
    """A thread of a queue pool, and the job whose slot it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.holding: ClaimedJob | None = None
        self.thread: threading.Thread | None = None
        self.died_of: BaseException | None = None


class QueuePool(Slots):
    """Slots fed by an in-memory queue that ``size`` executor threads drain.

    An executor that dies anyway (nothing a job does should get past :meth:`_guarded`) is
    noticed by the claim loop within a second: its job fails, its slot is given back and
    another thread takes its place, so the free slots never count a dead executor.
    """

    thread_name = "pgqueue-exec"

    def __init__(self, size: int, context: JobContext) -> None:
        super().__init__(size)
        self.context = context
        self._queue: queue.SimpleQueue[ClaimedJob | None] = queue.SimpleQueue()
        self._executors: list[Executor] = []
        self._started = 0
        self._closing = False
        self._next_reap = 0.0

    def start(self) -> None:
        with self._cond:
            for _ in range(self.size):
                self._add_executor()

    def _add_executor(self) -> None:
        """Start one more executor thread; call with ``self._cond`` held."""
        executor = Executor()
        executor.thread = threading.Thread(target=self._executor_main, args=(executor,),
                                           name=f"{self.thread_name}-{self._started}",
                                           daemon=True)
        self._started += 1
        self._executors.append(executor)
        executor.thread.start()

    def _executor_main(self, executor: Executor) -> None:
        executor.thread_id = threading.get_ident()
        try:
            self._serve(executor)
        except BaseException as exc:
            executor.died_of = exc
            with self._cond:
                self._cond.notify_all()  # wake the claim loop to replace this thread
            return
        with self._cond:  # retired (shutdown, a smaller pool): not to be replaced
            if executor in self._executors:
                self._executors.remove(executor)

    def resize(self, size: int) -> None:
        """Start executors up to ``size``, or retire the surplus: each takes a stop
        marker from the queue when it is idle, so running jobs end first."""
        if size < 1:
            raise ValueError(f"a pool keeps at least 1 slot, not {size}")
        with self._cond:
            if self._closing:
                return
            change, self.size = size - self.size, size
            for _ in range(change):
                self._add_executor()
            for _ in range(-change):
                self._queue.put(None)
            self._cond.notify_all()

    def _serve(self, executor: Executor) -> None:
        while True:
            job = self._next(executor)
            if job is None:
                return
            self._guarded(executor, job)
            if not self._release(executor, job):
                return

    def _next(self, executor: Executor, timeout: float | None = None) -> ClaimedJob | None:
        """The next job (None: shut down); raises ``queue.Empty`` after ``timeout``."""
        job = self._queue.get(timeout=timeout)
        executor.holding = job
        return job

    def _guarded(self, executor: Executor, job: ClaimedJob) -> None:
        """Run ``job``; whatever escapes becomes its FAILURE (dropped if it ended already)."""
        try:
            self._run(executor, job)
        except Terminated:  # terminate() recorded REVOKED already
            executor.end()
        except BaseException as exc:
            executor.end()
            if job.stopped is not None:
                ended_after_stop(job, "with an error")
            else:
                self.context.finished(crashed(job, exc))

    def _run(self, executor: Executor, job: ClaimedJob) -> None:
        raise NotImplementedError

    def _release(self, executor: Executor, job: ClaimedJob) -> bool:
        """Give the job's slot back; False if it was given back already (abandoned)."""
        with self._cond:
            if executor.holding is not job:
                return False
            executor.holding = None
            self._busy -= 1
            self._cond.notify_all()
            return True

    def free_slots(self) -> int:
        self._reap()
        return super().free_slots()

    def wait_for_slot(self, timeout: float) -> None:
        self._reap()
        super().wait_for_slot(timeout)

    def _reap(self) -> None:
        """Replace executors that died (checked at most once a second)."""
        now = time.monotonic()
        if now < self._next_reap:
            return
        self._next_reap = now + 1.0
        with self._cond:
            if self._closing:
                return
            dead = [e for e in self._executors
                    if e.thread is not None and not e.thread.is_alive()]
            for executor in dead:
                self._executors.remove(executor)
                self._add_executor()
                if executor.holding is not None:
                    self._busy -= 1
                    self._cond.notify_all()
        for executor in dead:
            with executor.lock:  # its thread id may be another thread's now: no end()
                executor.job = None
            job, executor.holding = executor.holding, None
            cause = executor.died_of or RuntimeError("the thread ended")
            logger.error("Executor thread died (%s) holding %s; started another in its place",
                         safe_str(cause), f"job {job.id}" if job else "no job")
            if job is not None:
                self.context.finished(crashed(
                    job, cause, f"the thread running the task died ({type(cause).__name__})"))

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
        with self._cond:
            self._closing = True
            executors = len(self._executors)
        for _ in range(executors):
            self._queue.put(None)
