"""``-P solo``: one job at a time, in the claim loop's own thread (debugging, tests).

``revoke(terminate=True)`` raises :class:`~pgqueue.worker.execution.Terminated` in the
running task; one that comes after the claim but before the run (the worker holds the
job, the claim loop has not handed it over yet) is kept and applied when the job is
handed over: it then never runs. The task runs in the claim loop's thread, so one that
catches the interruption and goes on holds the worker until it returns (use ``-P
threads`` or ``-P processes`` for tasks that may); the job stays REVOKED, and what the
task returns then is logged at INFO and dropped.

Time limits: ``soft_time_limit`` raises :class:`SoftTimeLimitExceeded` in the task; at the
hard ``time_limit`` the job is recorded FAILURE (``task_failure`` is sent) and
:class:`TimeLimitExceeded` is raised in the task. One that swallows it holds the worker
until it returns, as for a terminate, and stays FAILURE.
"""

from __future__ import annotations

import threading

from pgqueue import states
from pgqueue.exceptions import SoftTimeLimitExceeded, TaskRevokedError, TimeLimitExceeded
from pgqueue.worker.execution import ClaimedJob, Terminated, crashed, failure
from pgqueue.worker.pools.base import (
    JobContext,
    RunningJob,
    Slots,
    TerminateFirst,
    ended_after_stop,
    log_time_limit,
    settle_run,
    terminated_outcome,
    time_limit_outcome,
    time_limit_reached,
)


class SoloPool(Slots):
    """``-P solo``: runs each job in the worker's main thread, one at a time."""

    def __init__(self, context: JobContext) -> None:
        super().__init__(1)
        self.context = context
        self._slot = RunningJob()
        #: Ids asked to terminate while no job of theirs ran here.
        self._terminate_first = TerminateFirst()
        self._lock = threading.Lock()

    def start(self) -> None:
        self._slot.thread_id = threading.get_ident()

    def submit(self, job: ClaimedJob) -> None:
        try:
            self._run(job)
        except Terminated:  # terminate() recorded REVOKED already
            self._slot.end()
        except BaseException as exc:  # nothing a job does may stop the claim loop
            self._slot.end()
            if job.stopped is not None:
                ended_after_stop(job, "with an error")
            else:
                self.context.finished(crashed(job, exc))

    def _run(self, job: ClaimedJob) -> None:
        hard, soft = self.context.limits(job)
        timers = []
        if soft:
            timers.append(threading.Timer(soft, self._slot.interrupt,
                                          (job, SoftTimeLimitExceeded)))
        if hard:
            timers.append(threading.Timer(hard, self._overrun, (job, hard)))
        with self._lock:
            first = self._terminate_first.take(job.id)
            if not first:
                self._slot.begin(job)
        if first:
            self.context.finished(terminated_outcome(self.context, job))
            return
        for timer in timers:
            timer.daemon = True
            timer.start()
        try:
            self.context.started(job)
            outcome = self.context.run(job)
        except Terminated:
            raise
        except (SoftTimeLimitExceeded, TimeLimitExceeded, TaskRevokedError) as exc:
            outcome = failure(job, exc, with_traceback=False)  # landed outside the task
        finally:
            self._slot.end()
            for timer in timers:
                timer.cancel()
        settle_run(self.context, job, outcome)  # job.stopped is final once end() returned

    def _overrun(self, job: ClaimedJob, limit: float) -> None:
        """At the hard time limit (in the timer's thread): record the failure, interrupt
        the task, then send task_failure."""
        if not self._slot.stop(job, states.FAILURE):
            return  # it ended meanwhile, or was terminated
        self.context.finished(time_limit_outcome(job, limit))
        log_time_limit(job, limit, "recorded FAILURE, interrupting it")
        self._slot.interrupt(job, TimeLimitExceeded)
        time_limit_reached(self.context, job, limit)

    def take_unstarted(self) -> list[ClaimedJob]:
        return []

    def terminate(self, job_id: str) -> bool:
        """Stop ``job_id``, which the worker holds: now if it runs, else when the claim
        loop hands it over (it is then never run)."""
        with self._lock:
            job = self._slot.job
            if job is None or job.id != job_id:
                self._terminate_first.add(job_id)
                return True
        if not self._slot.stop(job, states.REVOKED):
            return job.stopped is not None  # terminated already, or it ended
        self.context.finished(terminated_outcome(self.context, job))
        self._slot.interrupt(job, Terminated)
        return True

    def shutdown(self) -> None:
        pass

    def resize(self, size: int) -> None:
        if size != 1:
            raise ValueError("the solo pool runs one job at a time in the worker's main "
                             "thread: it cannot grow or shrink (use -P threads or -P "
                             "processes)")
