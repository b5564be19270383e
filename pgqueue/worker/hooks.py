"""A task's hooks and the task signals around one run, called in Celery's order.

    task_prerun, before_start, Task.__call__ (the task runs),
    then on SUCCESS:  on_success, task_success, after_return
         on FAILURE:  on_failure, task_failure, after_return
         on RETRY:    on_retry, task_retry
         on SNOOZED:  (no hook: the run is put off, it neither failed nor retried)
    and always task_postrun.

``before_start`` is part of the run: what it raises is the attempt's outcome. Everything
after the run only watches it: a hook or receiver that raises (``SystemExit`` included)
is logged, and the outcome stays what the task made it. They run where the task runs
(the child process under ``-P processes``, the event loop under ``-P asyncio``), before
the outcome is handed to the finisher, inside the job's time limits.

A job its pool ends from outside the run is another matter. At a hard time limit (and
when a ``-P processes`` child dies with the job and no retry is left) the pool records
FAILURE and sends ``task_failure`` itself, once, in the worker's process, whatever the
task does next (:func:`failed_outside`), as Celery's prefork parent does; the run's own
hooks (``on_failure``, ``after_return``, ``task_postrun``) run only where the task's
code sees the interruption and lets it out: in a thread (``-P threads``, ``solo``, plain
tasks under ``asyncio``), not in a killed child nor in a cancelled coroutine.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pgqueue import signals, states
from pgqueue.exceptions import ExceptionInfo, Retry

if TYPE_CHECKING:
    from pgqueue.request import Request
    from pgqueue.task import Task
    from pgqueue.worker.execution import ClaimedJob, Outcome

logger = logging.getLogger("pgqueue.worker")


def call_hook(task: Task, job: ClaimedJob, name: str, *args: Any) -> None:
    """``task.<name>(*args)``; whatever it raises is logged and goes no further."""
    try:
        getattr(task, name)(*args)
    except BaseException as exc:
        try:
            what = f"{type(exc).__name__}: {exc}"
        except BaseException:
            what = type(exc).__name__
        logger.error("Task %s[%s]: its %s hook raised %s; the job's outcome stands",
                     job.display, job.id, name, what, exc_info=exc)


def prerun(task: Task, job: ClaimedJob) -> None:
    if signals.task_prerun.has_receivers_for(task):
        signals.task_prerun.send_contained(sender=task, task_id=job.known_id, task=task,
                                           args=job.args, kwargs=job.kwargs)


def postrun(task: Task, job: ClaimedJob, retval: Any, state: str | None) -> None:
    """``state`` None: the run was interrupted from outside (Celery sends None too)."""
    if signals.task_postrun.has_receivers_for(task):
        signals.task_postrun.send_contained(sender=task, task_id=job.known_id, task=task,
                                            args=job.args, kwargs=job.kwargs,
                                            retval=retval, state=state)


def after_run(task: Task, job: ClaimedJob, request: Request, outcome: Outcome,
              value: Any, cause: BaseException | None, *, failure_sent: bool = False) -> Any:
    """The hooks and signals for how the run ended; returns Celery's ``retval`` (the
    return value, or the exception of a FAILURE or RETRY) for ``task_postrun``.
    ``cause``: the exception behind a FAILURE or RETRY outcome. ``failure_sent``: the
    pool sent ``task_failure`` already (:func:`failed_outside`), so it is not sent twice."""
    args, kwargs = job.args, job.kwargs
    if outcome.state == states.SUCCESS:
        call_hook(task, job, "on_success", value, job.known_id, args, kwargs)
        if signals.task_success.has_receivers_for(task):
            signals.task_success.send_contained(sender=task, result=value,
                                                runtime=outcome.runtime)
        call_hook(task, job, "after_return", outcome.state, value, job.known_id, args, kwargs, None)
        return value
    assert cause is not None
    if outcome.state == "SNOOZED":  # execution.SNOOZED: put off, not ended
        return cause
    einfo = ExceptionInfo(cause)
    if outcome.state == states.RETRY:
        reason = cause.exc if isinstance(cause, Retry) else cause
        call_hook(task, job, "on_retry", reason, job.known_id, args, kwargs, einfo)
        if signals.task_retry.has_receivers_for(task):
            signals.task_retry.send_contained(sender=task, request=request, reason=cause,
                                              einfo=einfo)
        return cause
    call_hook(task, job, "on_failure", cause, job.known_id, args, kwargs, einfo)
    if not failure_sent and signals.task_failure.has_receivers_for(task):
        signals.task_failure.send_contained(
            sender=task, task_id=job.known_id, exception=cause, args=args, kwargs=kwargs,
            traceback=cause.__traceback__, einfo=einfo)
    call_hook(task, job, "after_return", outcome.state, cause, job.known_id, args, kwargs, einfo)
    return cause


def failed_outside(task: Task | None, job: ClaimedJob, exc: BaseException) -> None:
    """``task_failure`` for a job its pool ended FAILURE from outside the run (a hard
    time limit; a child lost with the job), sent where the pool records it: in the
    worker's process, with no traceback of the task's (Celery's prefork parent sends it
    so, with :class:`TimeLimitExceeded` or :class:`WorkerLostError`)."""
    if task is not None and signals.task_failure.has_receivers_for(task):
        signals.task_failure.send_contained(
            sender=task, task_id=job.known_id, exception=exc, args=job.args,
            kwargs=job.kwargs, traceback=exc.__traceback__, einfo=ExceptionInfo(exc))


def revoked(task: Task | None, request: Request, *, terminated: bool = False,
            signum: int | None = None, expired: bool = False) -> None:
    """``task_revoked``: the job ends REVOKED (expired, terminated or aborted)."""
    if task is not None and signals.task_revoked.has_receivers_for(task):
        signals.task_revoked.send_contained(sender=task, request=request,
                                            terminated=terminated, signum=signum,
                                            expired=expired)


def internal_error(task: Task, job: ClaimedJob, request: Request, exc: BaseException) -> None:
    """``task_internal_error``: something escaped outside the task's own code."""
    if signals.task_internal_error.has_receivers_for(task):
        signals.task_internal_error.send_contained(
            sender=task, task_id=job.known_id, args=job.args, kwargs=job.kwargs, request=request,
            exception=exc, traceback=exc.__traceback__, einfo=ExceptionInfo(exc, internal=True))
