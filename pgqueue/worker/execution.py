"""Running one claimed job and describing how it ended, whatever pool runs it."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import reprlib
import time
import traceback as tb
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pgqueue import limits, states, tracing
from pgqueue.canvas.builtins import builtin_task
from pgqueue.exceptions import (
    NotRegistered,
    Retry,
    Snooze,
    SoftTimeLimitExceeded,
    TaskRevokedError,
    TimeLimitExceeded,
)
from pgqueue.limits import MAX_DELAY, decode_headers, decode_job
from pgqueue.request import Request, inside_task
from pgqueue.utils import storable_json, storable_text, utcnow, uuid
from pgqueue.worker import aborts, hooks

if TYPE_CHECKING:
    from pgqueue.app import App
    from pgqueue.result import EagerResult
    from pgqueue.task import Task

logger = logging.getLogger("pgqueue.worker")

@dataclass(slots=True)
class ClaimedJob:
    """A job this worker holds: a row of ``job_claim``."""

    id: str
    queue: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    priority: int
    run_at: datetime
    expires_at: datetime | None
    attempt: int
    max_retries: int | None
    ignore_result: bool
    options: dict[str, Any]
    parent_id: str | None
    root_id: str | None
    group_id: str | None
    created_at: datetime
    claimed_at: datetime
    #: Why the row cannot run (written by plain SQL around the producer's checks).
    fault: str | None = None
    #: ``headers=`` and what before_task_publish receivers added (a JSON object or None).
    headers: dict[str, Any] | None = None
    #: The task id as sent when it is not the row's uuid (``task_id="order-42"``).
    task_id: str | None = None
    #: The state its pool recorded when it stopped the run (REVOKED on terminate,
    #: FAILURE at the hard time limit); set once, before the run is interrupted. What
    #: the run does from then on is not the job's outcome (see :meth:`_Attempt._after`).
    stopped: str | None = None

    @property
    def known_id(self) -> str:
        """The task id as its sender knows it (``request.id``): the string given, else
        the row's uuid (``id``, which every statement about the job uses)."""
        return self.task_id or self.id

    @property
    def display(self) -> str:
        """The name in log lines: ``shadow=`` when the producer gave one."""
        shadow = self.options.get("shadow")
        return shadow if isinstance(shadow, str) else self.task

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ClaimedJob:
        """A row of ``job_claim``: the id is text already; arguments and options are
        JSON text, decoded here, job by job."""
        args, kwargs, options, fault = decode_job(row[3], row[4], row[11])
        headers, header_fault = decode_headers(row[17])
        (job_id, queue, task, _, _, priority, run_at, expires_at, attempt, max_retries,
         ignore_result, _, parent_id, root_id, group_id, created_at, claimed_at, _,
         task_id) = row
        return cls(job_id, queue, task, args, kwargs, priority, run_at, expires_at, attempt,
                   max_retries, ignore_result, options, parent_id, root_id, group_id,
                   created_at, claimed_at, fault or header_fault, headers, task_id)


#: The state of an outcome that puts the job off (``raise self.snooze(seconds)``): it runs
#: again in ``Outcome.snooze`` seconds, its attempt given back. Never a result's state.
SNOOZED = "SNOOZED"


@dataclass(slots=True)
class Outcome:
    """How an attempt ended. ``state`` RETRY means it will run again at ``run_at``;
    SNOOZED, in ``snooze`` seconds without spending the attempt."""

    job_id: str
    attempt: int
    state: str
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    run_at: datetime | None = None
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    runtime: float = 0.0
    #: The result is not kept: the worker's task or the job says so (the producer may not
    #: have known the task's setting).
    ignore_result: bool = False
    snooze: float | None = None
    #: Its line is in the log already (a job refused before it ran: expired, unknown).
    logged: bool = False

    def finish_record(self) -> dict[str, Any]:
        return {"id": self.job_id, "attempt": self.attempt, "state": self.state,
                "result": self.result, "error": self.error, "traceback": self.traceback,
                "ignore_result": self.ignore_result}

    def retry_record(self) -> dict[str, Any]:
        assert self.run_at is not None
        return {"id": self.job_id, "attempt": self.attempt, "run_at": self.run_at.isoformat(),
                "error": self.error, "args": self.args, "kwargs": self.kwargs}

    def snooze_record(self) -> dict[str, Any]:
        return {"id": self.job_id, "attempt": self.attempt, "seconds": self.snooze or 0.0}


#: The longest error line, and text argument of an exception, an outcome keeps; tracebacks
#: keep up to TRACEBACK_MAX_CHARS. Longer text loses its middle (a note says so), so that
#: one huge message is not stored three times over (error, traceback, exception args).
ERROR_MAX_CHARS = 64 * 1024
TRACEBACK_MAX_CHARS = 1024 * 1024


def exception_payload(exc: BaseException) -> dict[str, Any]:
    """Celery's stored form of an exception, so ``AsyncResult`` can raise it again.

    Arguments PostgreSQL cannot store are kept in a safe form: text with NUL or lone
    surrogates replaced, anything else that is not storable JSON as its ``repr``."""
    return {"exc_type": storable_text(type(exc).__qualname__, ERROR_MAX_CHARS),
            "exc_module": storable_text(type(exc).__module__, ERROR_MAX_CHARS),
            "exc_message": [_storable_argument(arg) for arg in exc.args]}


def _storable_argument(arg: Any) -> Any:
    if isinstance(arg, str):
        return storable_text(arg, ERROR_MAX_CHARS)
    try:
        storable_json(arg, "an exception argument", ERROR_MAX_CHARS)
        return arg
    except (TypeError, ValueError):
        pass
    try:
        text = repr(arg)
    except Exception:  # a repr that fails (or recurses) must not lose the outcome
        text = f"<{type(arg).__name__} object: repr() failed>"
    return storable_text(text, ERROR_MAX_CHARS)


def describe_error(exc: BaseException) -> str:
    """``Type: message``, in a form PostgreSQL stores (see :func:`storable_text`)."""
    try:
        message = str(exc)
    except Exception:
        message = "<str() of the exception failed>"
    line = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return storable_text(line, ERROR_MAX_CHARS)


def failure(job: ClaimedJob, exc: BaseException, with_traceback: bool = True,
            state: str = states.FAILURE) -> Outcome:
    return Outcome(
        job.id, job.attempt, state,
        result=exception_payload(exc),
        error=describe_error(exc),
        traceback=storable_text("".join(tb.format_exception(exc)), TRACEBACK_MAX_CHARS)
        if with_traceback else None,
    )


def make_request(job: ClaimedJob, worker_id: str, hostname: str) -> Request:
    eta = job.options.get("eta")
    return Request(
        id=job.known_id, task=job.task, args=job.args, kwargs=job.kwargs,
        retries=job.attempt - 1, attempt=job.attempt,
        eta=datetime.fromisoformat(eta) if eta else None, expires=job.expires_at,
        hostname=hostname, worker=worker_id, queue=job.queue, priority=job.priority,
        parent_id=str(job.parent_id) if job.parent_id else None,
        root_id=str(job.root_id) if job.root_id else None,
        group=str(job.group_id) if job.group_id else None,
        ignore_result=job.ignore_result, called_directly=False,
        time_limit=job.options.get("time_limit"),
        soft_time_limit=job.options.get("soft_time_limit"),
        headers=job.headers, shadow=job.options.get("shadow"),
        max_retries=job.max_retries, max_retries_given="max_retries" in job.options,
    )


def prepare(app: App, job: ClaimedJob, worker_id: str, hostname: str) -> Task | Outcome:
    """The task to run, or the outcome when the job must not run (expired, unknown)."""
    task = app.tasks.get(job.task) or builtin_task(app, job.task)
    if job.expires_at is not None and job.expires_at <= utcnow():
        logger.info("Task %s[%s] expired at %s; revoked without running",
                    job.display, job.id, job.expires_at.isoformat())
        hooks.revoked(task, make_request(job, worker_id, hostname), expired=True)
        return Outcome(job.id, job.attempt, states.REVOKED,
                       error=f"expired at {job.expires_at.isoformat()}", logged=True)
    if task is None:
        exc = NotRegistered(
            f"Task of kind {job.task!r} never registered, please make sure it's imported."
        )
        logger.error("Received unregistered task of type %r [%s]", job.task, job.id)
        outcome = failure(job, exc, with_traceback=False)
        outcome.logged = True
        return outcome
    if job.options.get("errback"):
        job.args = errback_arguments(app, task, job.args)
    return task


def errback_arguments(app: App, task: Task, args: list[Any]) -> list[Any]:
    """A link_error callback's arguments, as Celery passes them: ``(request, exc,
    traceback)`` when its function takes more than one argument, else ``(task_id,)``;
    then the signature's own. The database stored the failed job's request and
    exception as JSON (see sql/migrations/0006_canvas.sql)."""
    from pgqueue.result import rebuild_exception

    if len(args) < 3 or not isinstance(args[0], dict):
        return args
    stored, payload, traceback, *rest = args
    failed = Request(id=stored.get("id"), task=stored.get("task"),
                     args=stored.get("args") or [], kwargs=stored.get("kwargs") or {},
                     retries=int(stored.get("retries") or 0),
                     parent_id=stored.get("parent_id"), root_id=stored.get("root_id"),
                     group=stored.get("group"), worker=stored.get("worker"),
                     called_directly=False)
    try:
        takes = [p for p in inspect.signature(task.run).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    except (TypeError, ValueError):
        takes = []
    if len(takes) > 1 or any(p.kind == p.VAR_POSITIONAL for p in takes):
        error = rebuild_exception(payload, None)
        return [failed, error, traceback, *rest]
    return [failed.id, *rest]


def execute(app: App, job: ClaimedJob, worker_id: str, hostname: str) -> Outcome:
    """Run the job's task and return its outcome; never raises for the task's errors.

    An ``async def`` task runs on an event loop of its own here; the asyncio pool uses
    :func:`execute_async` instead. Every pool runs jobs through one of the two: the run's
    trace span starts here (see :mod:`pgqueue.tracing`).
    """
    traced = tracing.processing(job)
    if traced is None:
        return _execute(app, job, worker_id, hostname)
    with traced:
        return traced.ended(_execute(app, job, worker_id, hostname))


def _execute(app: App, job: ClaimedJob, worker_id: str, hostname: str) -> Outcome:
    task = prepare(app, job, worker_id, hostname)
    if isinstance(task, Outcome):
        return task
    request = make_request(job, worker_id, hostname)
    try:
        announce_start(app, task, job, request)
        if is_async(task):
            outcome = asyncio.run(run_task_async(task, job, request))
        else:
            outcome = run_task(task, job, request)
        return conclude(app, task, job, outcome, request)
    except BaseException as exc:  # the pool makes it the job's FAILURE
        _escaped(task, job, request, exc)
        raise


#: Runs a named statement with its parameters (``App.execute``'s shape).
Statement = Callable[[str, dict[str, Any]], Any]


async def execute_async(app: App, job: ClaimedJob, worker_id: str, hostname: str,
                        writer: Executor | None = None,
                        statement: Statement | None = None) -> Outcome:
    """``execute()`` for the asyncio pool. ``writer`` runs the STARTED write (a blocking
    statement) of a task with ``track_started`` sent by name; the loop's default executor
    when None, which the tasks' own ``asyncio.to_thread()`` calls may keep busy.
    ``statement`` runs it: ``app.execute`` when None, whose pool the tasks' own sends
    may keep busy."""
    traced = tracing.processing(job)
    if traced is None:
        return await _execute_async(app, job, worker_id, hostname, writer, statement)
    with traced:
        return traced.ended(await _execute_async(app, job, worker_id, hostname, writer,
                                                 statement))


async def _execute_async(app: App, job: ClaimedJob, worker_id: str, hostname: str,
                         writer: Executor | None, statement: Statement | None) -> Outcome:
    task = prepare(app, job, worker_id, hostname)
    if isinstance(task, Outcome):
        return task
    request = make_request(job, worker_id, hostname)
    try:
        if _tracks_start(app, task, job):
            write = functools.partial(contextvars.copy_context().run, announce_start, app,
                                      task, job, request, statement)  # in the job's context
            await asyncio.get_running_loop().run_in_executor(writer, write)
        if is_async(task):
            outcome = await run_task_async(task, job, request)
        else:  # the asyncio pool runs plain tasks in its own threads, through execute();
            # one that gets here anyway (its task changed meanwhile) must not block the loop
            outcome = await asyncio.to_thread(run_task, task, job, request)
        return conclude(app, task, job, outcome, request)
    except BaseException as exc:
        _escaped(task, job, request, exc)
        raise


def is_async(task: Task) -> bool:
    """Whether the task runs as a coroutine: ``async def run``, or an ``async def
    __call__`` around a plain one (known per class: asking costs microseconds a job)."""
    cls = type(task)
    found = _async_classes.get(cls)
    if found is None:
        found = (inspect.iscoroutinefunction(task.run)
                 or inspect.iscoroutinefunction(cls.__call__))
        if "run" not in vars(task):  # an instance's own run() is asked about each time
            _async_classes[cls] = found
    return found


_async_classes: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()


class Terminated(TaskRevokedError):
    """What a pool raises in a job it terminated on request: the pool recorded REVOKED
    already, so this is no outcome of the task (one the task raised itself, from
    ``get()`` of a revoked job, is)."""


#: Interruptions a pool sends into a running job; it makes them the outcome itself.
_INTERRUPTS = (SoftTimeLimitExceeded, TimeLimitExceeded, TaskRevokedError,
               asyncio.CancelledError)


def _escaped(task: Task, job: ClaimedJob, request: Request, exc: BaseException) -> None:
    if not isinstance(exc, _INTERRUPTS):
        hooks.internal_error(task, job, request, exc)


def _tracks_start(app: App, task: Task, job: ClaimedJob) -> bool:
    """The task wants STARTED shown but the producer's row does not say so."""
    track = task.track_started if task.track_started is not None \
        else app.conf.task_track_started
    return bool(track) and not job.options.get("track_started")


def announce_start(app: App, task: Task, job: ClaimedJob, request: Request,
                   statement: Statement | None = None) -> None:
    """Publish STARTED for a task with ``track_started`` sent by a producer that did not
    know it (a job sent by name); otherwise the row already says so, at no cost.
    ``statement`` runs the write (``app.execute`` when None)."""
    if _tracks_start(app, task, job):
        (statement or app.execute)("job_progress", {
            "id": job.id, "state": states.STARTED, "meta": None, "attempt": job.attempt,
            "worker": request.worker})


def conclude(app: App, task: Task, job: ClaimedJob, outcome: Outcome,
             request: Request) -> Outcome:
    """Apply an abort requested while the job ran (not to one its pool stopped: that
    ended already). The one line per job is the pool's to log (:func:`settle`), once
    the outcome stands."""
    if task.abortable and job.stopped is None and outcome.state != states.REVOKED \
            and aborts.is_aborted(app, job.id):
        outcome = Outcome(job.id, job.attempt, states.REVOKED, error="aborted by request",
                          result=outcome.result if outcome.state == states.SUCCESS
                          and not outcome.ignore_result else None,
                          runtime=outcome.runtime)
        hooks.revoked(task, request)
    if task.ignore_result and not followed(job):
        outcome.ignore_result = True
    return outcome


def settle(job: ClaimedJob, outcome: Outcome) -> Outcome:
    """The outcome of a run that stands (its pool did not stop it first): log the one
    line per job, then drop the result of an ``ignore_result`` success, which is never
    stored nor checked (see :func:`_succeeded`), so that it is neither pickled nor sent.
    Pools call it after the run, once ``job.stopped`` is final: a stopped job's late
    return logs no line of an ending it did not have (see ``ended_after_stop``)."""
    if not outcome.logged:
        log_outcome(job, outcome)
        outcome.logged = True
    if outcome.ignore_result and outcome.state == states.SUCCESS:
        outcome.result = None
    return outcome


@contextmanager
def _running(task: Task, request: Request) -> Iterator[None]:
    token = task.push_request(request)
    inside = inside_task.set(True)
    try:
        yield
    finally:
        inside_task.reset(inside)
        task.pop_request(token)


class _Attempt:
    """One run between ``task_prerun`` and ``task_postrun``: turns what the task did
    into an outcome, then calls the hooks on it (see :mod:`pgqueue.worker.hooks`)."""

    def __init__(self, task: Task, job: ClaimedJob, request: Request) -> None:
        self.task, self.job, self.request = task, job, request
        self.retval: Any = None
        self.state: str | None = None
        self.started = 0.0

    def __enter__(self) -> _Attempt:
        hooks.prerun(self.task, self.job)
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        hooks.postrun(self.task, self.job, self.retval, self.state)

    def returned(self, value: Any) -> Outcome:
        runtime = time.perf_counter() - self.started
        return self._after(*_succeeded(self.task, self.job, value, runtime), value)

    def raised(self, exc: BaseException) -> Outcome:
        runtime = time.perf_counter() - self.started
        return self._after(*_raised(self.task, self.job, exc, runtime), None)

    def _after(self, outcome: Outcome, cause: BaseException | None, value: Any) -> Outcome:
        stopped = self.job.stopped
        if stopped is not None and outcome.state != stopped:
            # The pool ended the job already (a terminate, a hard time limit) and the task
            # went on: hooks of another ending would tell of an outcome that does not
            # stand. task_postrun says "interrupted" (state None), as when it is not
            # swallowed; Celery's killed child runs none of them.
            return outcome
        # At a hard time limit the pool sent task_failure itself (hooks.failed_outside).
        self.state = outcome.state
        self.retval = hooks.after_run(self.task, self.job, self.request, outcome, value, cause,
                                      failure_sent=stopped == states.FAILURE)
        return outcome


def run_task(task: Task, job: ClaimedJob, request: Request) -> Outcome:
    with _running(task, request), _Attempt(task, job, request) as attempt:
        try:
            task.before_start(job.known_id, job.args, job.kwargs)
            value = task(*job.args, **job.kwargs)
        except BaseException as exc:  # SystemExit, KeyboardInterrupt...: outcomes too
            if isinstance(exc, Terminated):
                raise  # the pool recorded the outcome
            return attempt.raised(exc)
        return attempt.returned(value)


async def run_task_async(task: Task, job: ClaimedJob, request: Request) -> Outcome:
    with _running(task, request), _Attempt(task, job, request) as attempt:
        try:
            task.before_start(job.known_id, job.args, job.kwargs)
            value = task(*job.args, **job.kwargs)
            if inspect.isawaitable(value):  # __call__ hands back the coroutine of run()
                value = await value
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError) and _cancelled_from_outside():
                raise  # by the pool (time limit, terminate): not the task's outcome
            return attempt.raised(exc)
        return attempt.returned(value)


def _cancelled_from_outside() -> bool:
    """Whether someone cancelled the running task, rather than it raising CancelledError
    itself; Python 3.10 can't tell, so there every CancelledError counts as a cancel."""
    cancelling = getattr(asyncio.current_task(), "cancelling", None)
    return cancelling is None or bool(cancelling())


#: An outcome, and the exception behind it when it is a FAILURE or a RETRY.
_Ended = tuple[Outcome, BaseException | None]


def followed(job: ClaimedJob) -> bool:
    """Whether a workflow step waits on the job (the next step of a chain, a chord body,
    a link): its result is then stored whatever ``ignore_result`` says, since that step
    reads it, as Celery passes the value on. The finish keeps the row too (``_STORED``
    in pgqueue/db/queries.py)."""
    return job.options.get("followed") is True


def _succeeded(task: Task, job: ClaimedJob, value: Any, runtime: float) -> _Ended:
    if (task.ignore_result or job.ignore_result) and not followed(job):
        # Never stored (the finish drops it), so it need not be storable; settle() drops
        # it once logged, and task.apply() returns it.
        return Outcome(job.id, job.attempt, states.SUCCESS, result=value, runtime=runtime,
                       ignore_result=True), None
    try:
        storable_json(value, f"the return value of task {task.name}",
                      task.app.conf["result_max_bytes"], "result_max_bytes")
    except (TypeError, ValueError) as exc:
        return _failed_to_store(job, exc, runtime), exc
    return Outcome(job.id, job.attempt, states.SUCCESS, result=value, runtime=runtime), None


def _failed_to_store(job: ClaimedJob, exc: Exception, runtime: float) -> Outcome:
    outcome = failure(job, exc, with_traceback=False)
    outcome.runtime = runtime
    return outcome


#: What a task that raises each of these tried to do to the worker.
_STOPS = {SystemExit: "exit", KeyboardInterrupt: "interrupt"}


def contained(exc: BaseException) -> Exception:
    """``exc`` as an error a caller of ``get()`` can raise safely: a ``SystemExit`` or
    ``KeyboardInterrupt`` from a task ends that job, never the worker or the reader."""
    if isinstance(exc, Exception):
        return exc
    verb = next((v for t, v in _STOPS.items() if isinstance(exc, t)), "stop")
    error = RuntimeError(f"{safe_repr(exc)} raised by the task: a task can't {verb} the worker")
    error.__cause__ = exc
    return error


def _raised(task: Task, job: ClaimedJob, raised: BaseException, runtime: float) -> _Ended:
    exc = contained(raised)
    if isinstance(exc, Snooze):
        seconds = exc.seconds
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) \
                and 0 <= seconds <= MAX_DELAY:  # a Snooze made by hand skipped the checks
            return Outcome(job.id, job.attempt, SNOOZED, snooze=float(seconds),
                           runtime=runtime), exc
        exc = ValueError(f"task {task.name} snoozed for {safe_repr(seconds, 60)} seconds: "
                         f"give 0 to {MAX_DELAY:,}")
        return _failed_to_store(job, exc, runtime), exc
    if isinstance(exc, Retry):
        return _retry_outcome(task, job, exc, runtime)
    if isinstance(exc, task.autoretry_for) and not isinstance(exc, task.dont_autoretry_for):
        try:
            options = {k: v for k, v in task.retry_kwargs.items() if k != "countdown"}
            task.retry(exc=exc, countdown=task.autoretry_countdown(), **options)
        except Retry as signal:
            return _retry_outcome(task, job, signal, runtime)
        except Exception as final:
            exc = final
    try:
        outcome = failure(job, exc)
    except BaseException as error:  # its str() or repr() raised, or looped
        outcome = crashed(job, exc, f"{type(exc).__name__} raised by the task "
                                    f"({type(error).__name__} while describing it)")
    outcome.runtime = runtime
    return outcome, exc


def crashed(job: ClaimedJob, exc: BaseException, what: str | None = None) -> Outcome:
    """The last resort of every pool: ``exc`` escaped while running ``job`` or describing
    how it ended. FAILURE, built without trusting ``exc``'s str() (it may be what failed)."""
    what = what or f"{type(exc).__name__} escaped while the worker ran the task"
    error = f"{what}: {safe_str(exc)}"
    logger.error("Task %s[%s] raised unexpected: %s", job.display, job.id, error, exc_info=exc)
    try:
        trace: str | None = "".join(tb.format_exception(exc))
    except BaseException:  # a traceback that can't be shown is no reason to stop
        trace = None
    return Outcome(job.id, job.attempt, states.FAILURE, error=error, traceback=trace,
                   result={"exc_type": "RuntimeError", "exc_module": "builtins",
                           "exc_message": [error]}, logged=True)


def safe_str(value: object) -> str:
    try:
        return str(value)
    except BaseException as exc:  # a hostile __str__ must not stop the worker
        return f"<{type(value).__name__}: str() raised {type(exc).__name__}>"


def safe_repr(value: object, limit: int = 1024) -> str:
    """repr() for a log line: never raises, and a huge value is cut at ``limit``."""
    try:
        text = _result_repr.repr(value)  # shallow: a deep value costs no more than a flat one
    except BaseException as exc:  # a hostile __repr__ must not stop the worker
        return f"<{type(value).__name__}: repr() raised {type(exc).__name__}>"
    return text if len(text) <= limit else f"{text[:limit]}..."


def _retry_outcome(task: Task, job: ClaimedJob, signal: Retry, runtime: float) -> _Ended:
    when = signal.when
    try:
        if isinstance(when, datetime):
            run_at = when if when.tzinfo else when.astimezone()
        else:
            run_at = utcnow() + timedelta(seconds=float(when or 0))
    except (TypeError, ValueError, OverflowError) as e:  # NaN, inf, far beyond year 9999
        error = ValueError(f"task {task.name} asked to retry at an impossible time: "
                           f"{when!r} ({e})")
        return _failed_to_store(job, error, runtime), error
    try:
        for what, value in (("args", signal.args_override), ("kwargs", signal.kwargs_override)):
            if value is not None:
                storable_json(value, f"the retry {what} of task {task.name}")
    except (TypeError, ValueError) as exc:
        return _failed_to_store(job, exc, runtime), exc
    reason = signal.exc if signal.exc is not None else signal
    return Outcome(
        job.id, job.attempt, states.RETRY, error=describe_error(reason), run_at=run_at,
        args=signal.args_override, kwargs=signal.kwargs_override, runtime=runtime,
    ), signal


# Like Celery's log line, a result is shown cut short: a large or deep value in the log
# would cost more than the job.
_result_repr = reprlib.Repr()
_result_repr.maxlevel, _result_repr.maxstring, _result_repr.maxother = 10, 1024, 1024
_result_repr.maxlist = _result_repr.maxtuple = _result_repr.maxdict = 100


def log_outcome(job: ClaimedJob, outcome: Outcome) -> None:
    if outcome.state == states.SUCCESS:
        logger.info("Task %s[%s] succeeded in %.4fs: %s",
                    job.display, job.id, outcome.runtime, safe_repr(outcome.result))
    elif outcome.state == states.RETRY:
        assert outcome.run_at is not None
        logger.info("Task %s[%s] retry: retry in %.1fs: %s", job.display, job.id,
                    max(0.0, (outcome.run_at - utcnow()).total_seconds()), outcome.error)
    elif outcome.state == states.FAILURE:
        logger.error("Task %s[%s] raised unexpected: %s", job.display, job.id, outcome.error)
    elif outcome.state == SNOOZED:
        logger.info("Task %s[%s] snoozed for %.1fs", job.display, job.id, outcome.snooze or 0)
    else:
        logger.info("Task %s[%s] %s: %s", job.display, job.id, outcome.state.lower(),
                    outcome.error)


#: How many snoozes in a row ``task.apply()`` runs again at once before it gives up.
EAGER_SNOOZES = 100


def run_eagerly(task: Task, args: list[Any], kwargs: dict[str, Any],
                task_id: str | None) -> EagerResult:
    """``task.apply()``: run here with a worker's request and retry handling, no database."""
    from pgqueue.result import EagerResult

    job_id = task_id or uuid()
    # As a worker's job: the row's uuid as its id (what statements take), the id as given
    # for the request (any string is a task id).
    row_id = limits.row_id(job_id) or uuid()
    given = job_id if job_id != row_id else None
    attempt = 1
    snoozes = 0
    while True:
        job = ClaimedJob(row_id, task.queue or "default", task.name, args, kwargs, 0,
                         utcnow(), None, attempt, task.max_retries, False, {}, None, None,
                         None, utcnow(), utcnow(), task_id=given)
        request = make_request(job, "eager", "localhost")
        request.is_eager = True
        if is_async(task):
            outcome = asyncio.run(run_task_async(task, job, request))
        else:
            outcome = run_task(task, job, request)
        if outcome.state == SNOOZED and snoozes < EAGER_SNOOZES:
            snoozes += 1  # at once, like an eager retry, and the attempt stays
            continue
        if outcome.state == SNOOZED:
            exc = RuntimeError(f"task {task.name} snoozed {EAGER_SNOOZES} times in a row "
                               "in eager mode (task.apply() does not wait)")
            outcome = failure(job, exc, with_traceback=False)
            break
        if outcome.state != states.RETRY:
            break
        attempt += 1  # eager retries run at once, as in Celery
        args = outcome.args if outcome.args is not None else args
        kwargs = outcome.kwargs if outcome.kwargs is not None else kwargs
    if outcome.state == states.REVOKED:
        raise TaskRevokedError(outcome.error)
    return EagerResult(job_id, outcome.state, outcome.result, outcome.traceback, task.app)
