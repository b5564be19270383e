"""``-P threads`` (the default): a thread per slot, for I/O-bound work.

Time limits: ``soft_time_limit`` raises :class:`SoftTimeLimitExceeded` inside the task;
at the hard ``time_limit`` the job is recorded FAILURE and its slot goes to a new thread
(see :mod:`pgqueue.worker.pools.base` and docs/reliability.md).

``revoke(terminate=True)`` records the job REVOKED at once and raises
:class:`~pgqueue.worker.execution.Terminated` in its thread. A Python thread cannot be
killed: a task that catches the exception and goes on keeps running, so after
``TERMINATE_GRACE`` its thread is abandoned as past a hard time limit, and a new thread
takes its slot. What it returns later is logged at INFO and dropped: it counts nowhere
(``processed``, metrics), logs no "succeeded" line, and fires no hook of another ending
than the one recorded.
"""

from __future__ import annotations

import logging
import threading

from pgqueue import states
from pgqueue.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from pgqueue.worker.execution import ClaimedJob, Terminated
from pgqueue.worker.pools.base import (
    Executor,
    JobContext,
    QueuePool,
    RunningJob,
    TerminateFirst,
    log_time_limit,
    settle_run,
    terminated_outcome,
    time_limit_outcome,
    time_limit_reached,
)

logger = logging.getLogger("pgqueue.worker")

#: Seconds a terminated task has to return before its thread is abandoned.
TERMINATE_GRACE = 1.0


class ThreadPool(QueuePool):
    """``-P threads``: ``size`` threads share the process (I/O-bound work).

    A thread past its hard time limit is abandoned: a new thread takes its slot at once
    and the old one exits when its task returns. At most ``max_abandoned`` (default
    ``size``) run at a time; past that, a job over its limit keeps its slot until it returns.
    """

    def __init__(self, size: int, context: JobContext, max_abandoned: int | None = None) -> None:
        super().__init__(size, context)
        self.max_abandoned = size if max_abandoned is None else max_abandoned
        self._running: dict[str, RunningJob] = {}
        #: Jobs held by the worker, asked to terminate before a thread took them.
        self._terminate_first = TerminateFirst()
        self._running_lock = threading.Lock()

    def terminate(self, job_id: str) -> bool:
        """Stop ``job_id``, which the worker holds: now if it runs, else when a thread
        takes it (it is then never run)."""
        with self._running_lock:
            running = self._running.get(job_id)
            if running is None:
                self._terminate_first.add(job_id)
                return True
        job = running.job
        if job is None:
            return False  # it ended meanwhile
        if not running.stop(job, states.REVOKED):
            return job.stopped is not None  # stopped already (its time limit), or it ended
        self.context.finished(terminated_outcome(self.context, job))
        running.interrupt(job, Terminated)
        if isinstance(running, Executor):
            timer = threading.Timer(TERMINATE_GRACE, self._abandon,
                                    (running, job, "did not stop when terminated"))
            timer.daemon = True
            timer.start()
        return True

    def _run(self, executor: Executor, job: ClaimedJob) -> None:
        hard, soft = self.context.limits(job)
        timers = []
        if soft:
            timers.append(threading.Timer(soft, executor.interrupt,
                                          (job, SoftTimeLimitExceeded)))
        if hard:
            timers.append(threading.Timer(hard, self._overrun, (executor, job, hard)))
        with self._running_lock:
            first = self._terminate_first.take(job.id)
            if not first:
                executor.begin(job)
                self._running[job.id] = executor
        if first:
            self.context.finished(terminated_outcome(self.context, job))
            return
        for timer in timers:
            timer.daemon = True
            timer.start()
        try:
            self.context.started(job)
            outcome = self.context.run(job)
        finally:
            executor.end()
            self._running.pop(job.id, None)
            for timer in timers:
                timer.cancel()
        settle_run(self.context, job, outcome)  # job.stopped is final once end() returned

    def _overrun(self, executor: Executor, job: ClaimedJob, limit: float) -> None:
        """At the hard time limit: record the failure, free the slot, interrupt the task,
        then send task_failure."""
        if not executor.stop(job, states.FAILURE):
            return  # it ended meanwhile, or was terminated
        self.context.finished(time_limit_outcome(job, limit))
        log_time_limit(job, limit, "recorded FAILURE, interrupting it")
        if self._abandon(executor, job, f"exceeded its time limit ({limit:.1f}s)"):
            executor.interrupt(job, TimeLimitExceeded)
        time_limit_reached(self.context, job, limit)

    def _abandon(self, executor: Executor, job: ClaimedJob, why: str) -> bool:
        """Give the slot of ``executor``, still running ``job`` (settled already), to a
        new thread; False if the job ended meanwhile or too many threads are abandoned."""
        with self._cond:
            if executor.holding is not job or self._closing:
                return False
            if self.abandoned >= self.max_abandoned:
                logger.error("Task %s[%s] %s; %d threads abandoned already (the most "
                             "this pool abandons): this slot stays busy until the task "
                             "returns", job.display, job.id, why, self.abandoned)
                return False
            executor.holding = None
            self.abandoned += 1
            self._busy -= 1
            self._executors.remove(executor)
            self._add_executor()
            self._cond.notify_all()
            abandoned = self.abandoned
        logger.warning("Task %s[%s] %s: its thread is abandoned and may still be running "
                       "(%d abandoned now); a new thread takes its slot", job.display,
                       job.id, why, abandoned)
        return True

    def _release(self, executor: Executor, job: ClaimedJob) -> bool:
        if super()._release(executor, job):
            return True
        with self._cond:
            self.abandoned -= 1
            abandoned = self.abandoned
        logger.warning("Task %s[%s]: its abandoned thread returned (%d abandoned now)",
                       job.display, job.id, abandoned)
        return False
