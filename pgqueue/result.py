"""Results: ``AsyncResult`` reads a job's state and waits for it on a notification."""

from __future__ import annotations

import importlib
import inspect
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pgqueue import limits, states
from pgqueue.db.listener import Listener
from pgqueue.exceptions import PermissionDenied, TaskError, TaskRevokedError, TimeoutError

if TYPE_CHECKING:
    from pgqueue.app import App


@dataclass(slots=True)
class ResultMeta:
    """One reading of a job: ``result_get`` mapped to Celery's vocabulary."""

    state: str
    result: Any = None
    traceback: str | None = None
    date_done: datetime | None = None
    name: str | None = None
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    retries: int = 0
    worker: str | None = None
    error: str | None = None

    @property
    def ready(self) -> bool:
        return self.state in states.READY_STATES


# Apps whose database role may read a job's state and outcome but not its arguments
# (the <schema>_producer role): they read without them, so ``args`` and ``kwargs`` are None.
_arguments_hidden: weakref.WeakSet[App] = weakref.WeakSet()


def read_row(app: App, job_id: str | None) -> list[Any]:
    """The ``result_get`` rows of a job (by its row uuid, see :func:`limits.row_id`),
    without its arguments if the role may not see them. None (a string that cannot be a
    task id) has no rows."""
    if job_id is None:
        return []
    if app not in _arguments_hidden:
        try:
            return app.execute("result_get", {"id": job_id})
        except PermissionDenied:
            rows = app.execute("result_get_state", {"id": job_id})  # else: no grant at all
            _arguments_hidden.add(app)
            return rows
    return app.execute("result_get_state", {"id": job_id})


def current_row(rows: list[Any]) -> tuple[Any, ...] | None:
    """The row that says how the job stands: a job run again under its id (a caller may
    reuse a ``task_id``) has a live row beside the final one of its last run, and the
    live one is newer (a finish moves the row in one statement)."""
    return next((r for r in rows if not r[0]), rows[0] if rows else None)


def meta_from_row(row: tuple[Any, ...] | None) -> ResultMeta:
    if row is None:
        return ResultMeta(states.PENDING)
    (final, state, result, error, traceback, finished_at, meta, progress_state, attempt,
     task, args, kwargs, worker, options) = row
    common = {"name": task, "args": args, "kwargs": kwargs, "worker": worker,
              "retries": max(0, attempt - 1), "error": error}
    if final:
        if state == states.FAILURE:
            result = rebuild_exception(result, error)
        elif state == states.REVOKED:
            result = TaskRevokedError(error or "revoked")
        return ResultMeta(state, result, traceback, finished_at, **common)
    if state == "started":
        if progress_state:
            return ResultMeta(progress_state, meta, **common)
        # A row written by plain SQL may hold any JSON in options.
        tracked = isinstance(options, dict) and options.get("track_started")
        started = states.STARTED if tracked else states.PENDING
        return ResultMeta(started, meta, **common)
    if state == "retry" or attempt > 0 and error:
        return ResultMeta(states.RETRY, TaskError("Retry", error), **common)
    return ResultMeta(states.PENDING, **common)


def rebuild_exception(payload: Any, error: str | None) -> BaseException:
    """The task's exception from its stored form; a :class:`TaskError` when its class is
    not importable here. Only modules already imported are searched, so reading a result
    never imports code named by the database."""
    if not isinstance(payload, dict):
        return TaskError("Exception", error or payload)
    name = str(payload.get("exc_type") or "Exception")
    module_name = str(payload.get("exc_module") or "builtins")
    message = payload.get("exc_message") or []
    args = message if isinstance(message, list) else [message]
    cls = exception_class(module_name, name)
    if cls is not None:
        try:
            return cls(*args)
        except Exception:
            pass
    return TaskError(f"{module_name}.{name}", error or args)


def exception_class(module_name: str, name: str) -> type[BaseException] | None:
    """The exception class ``module_name.name`` if that module is imported already (or is
    pgqueue's own exceptions); None otherwise. Never imports a module a row names."""
    module = sys.modules.get(module_name)
    if module is None and module_name == "pgqueue.exceptions":
        module = importlib.import_module(module_name)
    cls: Any = module
    for part in name.split("."):  # static: a module's __getattr__ may import
        cls = inspect.getattr_static(cls, part, None)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        return cls
    return None


class AsyncResult:
    """A handle on a job by id: its state, its result, and a way to wait for it.

    Any string is a task id, as in Celery: ``id`` is the string given; the rows are found
    by its uuid (:func:`pgqueue.limits.row_id`). An id no job has is PENDING.
    """

    #: True when a send met a live job holding its ``unique_key``: this is that job.
    duplicate: bool = False

    def __init__(self, id: str, app: App | None = None, task_name: str | None = None,
                 backend: Any = None) -> None:
        if app is None:
            from pgqueue.app import current_app

            app = current_app()
        self.id = str(id)
        self.app = app
        self.task_name = task_name

    task_id = property(lambda self: self.id)

    @property
    def row_id(self) -> str | None:
        """The uuid of the job's rows (``jobs.id``, ``results.id``); None for a string
        that cannot be a task id (empty, too long, with NUL), which no job has."""
        return limits.row_id(self.id)

    def __repr__(self) -> str:
        return f"<AsyncResult: {self.id}>"

    def __str__(self) -> str:
        return self.id

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        return isinstance(other, str) and other == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def _meta(self) -> ResultMeta:
        # Read anew every time, final states too: a job sent again under the same id
        # makes a final state current no longer (one primary-key read).
        return meta_from_row(current_row(read_row(self.app, self.row_id)))

    def read(self) -> ResultMeta:
        """One consistent reading: state, result or progress, traceback, date_done...

        ``state`` and ``info`` each read the row anew, so a status page reading both can
        pair a PROGRESS state with the final result; read once and use its fields.
        """
        return self._meta()

    def _get_task_meta(self) -> dict[str, Any]:
        """Celery's form of :meth:`read`, for ported code that calls it."""
        return self._as_message(self._meta())

    def _as_message(self, meta: ResultMeta) -> dict[str, Any]:
        return {"task_id": self.id, "status": meta.state, "result": meta.result,
                "traceback": meta.traceback, "date_done": meta.date_done,
                "name": meta.name, "args": meta.args, "kwargs": meta.kwargs,
                "retries": meta.retries, "worker": meta.worker}

    @property
    def state(self) -> str:
        return self._meta().state

    status = state

    @property
    def result(self) -> Any:
        """The return value, the exception of a failure, or progress metadata."""
        return self._meta().result

    info = result

    @property
    def traceback(self) -> str | None:
        return self._meta().traceback

    @property
    def date_done(self) -> datetime | None:
        return self._meta().date_done

    @property
    def name(self) -> str | None:
        return self._meta().name or self.task_name

    @property
    def args(self) -> list[Any] | None:
        return self._meta().args

    @property
    def kwargs(self) -> dict[str, Any] | None:
        return self._meta().kwargs

    @property
    def retries(self) -> int:
        return self._meta().retries

    @property
    def worker(self) -> str | None:
        return self._meta().worker

    def ready(self) -> bool:
        return self._meta().ready

    def successful(self) -> bool:
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        return self.state == states.FAILURE

    def get(self, timeout: float | None = None, propagate: bool = True,
            interval: float = 1.0, disable_sync_subtasks: bool = True,
            callback: Callable[[str, Any], Any] | None = None,
            on_message: Callable[[dict[str, Any]], Any] | None = None,
            on_interval: Callable[[], Any] | None = None,
            no_ack: bool = True, follow_parents: bool = True,
            PROPAGATE_STATES: frozenset[str] = states.PROPAGATE_STATES,  # noqa: N803
            ) -> Any:
        """Wait until the job is final and return its result.

        Wakes on the completion notification of the finishing worker; ``interval`` only
        bounds how long it trusts silence before re-reading the row. Raises the task's
        exception when it failed (``propagate=True``) and :class:`TimeoutError` after
        ``timeout`` seconds. As in Celery, ``on_message`` is called with the meta dict
        (``status``, ``result``, ``task_id``, ...) of each state the wait reads (the first,
        each change, the final one; progress is read at least every ``interval``), and
        ``callback(task_id, result)`` once with the result it returns. ``on_interval`` is
        called each time the wait wakes without a final state; ``PROPAGATE_STATES`` are the
        states that raise. ``no_ack`` (there is no result message to acknowledge: results
        are rows) and ``follow_parents`` (a job has no parent results to raise yet) are
        accepted for Celery's callers and change nothing. Any other keyword is a TypeError.
        """
        from pgqueue.request import inside_task

        if disable_sync_subtasks and inside_task.get():
            raise RuntimeError("Never call result.get() within a task: it can deadlock the "
                               "worker. Chain the work or pass disable_sync_subtasks=False.")
        meta = self._wait(timeout, interval, on_message, on_interval)
        if propagate and meta.state in PROPAGATE_STATES:
            assert isinstance(meta.result, BaseException)
            raise meta.result
        if callback is not None:
            callback(self.id, meta.result)
        return meta.result

    wait = get

    def _wait(self, timeout: float | None, interval: float,
              on_message: Callable[[dict[str, Any]], Any] | None = None,
              on_interval: Callable[[], Any] | None = None) -> ResultMeta:
        seen: list[tuple[str, str]] = []

        def read() -> ResultMeta:
            meta = self._meta()
            if on_message is not None and seen[-1:] != [(meta.state, repr(meta.result))]:
                seen.append((meta.state, repr(meta.result)))
                on_message(self._as_message(meta))
            return meta

        meta = read()
        if meta.ready:  # one read, and no LISTEN connection, for a finished job
            return meta
        deadline = None if timeout is None else time.monotonic() + timeout
        row_id = self.row_id
        if row_id is None:  # no job can have it: PENDING until the timeout, as in Celery
            row_id = self.id
        waiter = self.app.result_waiter
        event = waiter.register(row_id)
        try:
            while True:
                event.clear()
                meta = read()
                if meta.ready:
                    return meta
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"the job {self.id} did not finish within {timeout}s "
                                       f"(state {meta.state})")
                event.wait(interval if remaining is None else min(interval, remaining))
                if on_interval is not None:
                    on_interval()
        finally:
            waiter.unregister(row_id, event)

    def forget(self) -> None:
        """Delete the stored result."""
        if self.row_id is not None:
            self.app.execute("result_forget", {"id": self.row_id})

    def retry(self) -> AsyncResult:
        """Send this job again under the same id, if it ended FAILURE or REVOKED (else
        ValueError, saying why); returns this result, which now reads the new run. The
        old outcome is kept in :meth:`history`."""
        self.app.retry([self.id])
        return self

    def history(self) -> list[dict[str, Any]]:
        """The outcomes that retries by hand replaced, oldest first: ``state``,
        ``attempt``, ``error``, ``traceback``, ``result``, ``worker``, ``started_at``,
        ``finished_at``, ``retried_at``, ``retried_by`` (rows of ``job_history``)."""
        names = ("state", "attempt", "error", "traceback", "result", "worker",
                 "started_at", "finished_at", "retried_at", "retried_by")
        return [dict(zip(names, row, strict=True))
                for row in self.app.execute("job_history_get", {"id": self.row_id})]

    def revoke(self, terminate: bool = False, signal: str | None = None,
               wait: bool = False, timeout: float | None = None) -> None:
        """Stop the job: not yet started, it ends REVOKED and never runs (see
        :meth:`pgqueue.control.Control.revoke` for ``terminate`` and ``signal``)."""
        if wait or timeout is not None:
            raise TypeError("revoke(wait=, timeout=) is not supported: workers send no "
                            "replies; use result.get(timeout=...) or read result.state")
        self.app.control.revoke(self.id, terminate=terminate, signal=signal)


class EagerResult(AsyncResult):
    """The result of ``task.apply()``, already known, with no database behind it."""

    def __init__(self, id: str, state: str, result: Any, traceback: str | None,
                 app: App) -> None:
        self.id = id
        self.app = app
        self.task_name = None
        if state == states.FAILURE:
            result = rebuild_exception(result, None)
        self._known = ResultMeta(state, result, traceback)

    def _meta(self) -> ResultMeta:
        return self._known

    def forget(self) -> None:
        pass


class ResultWaiter:
    """One LISTEN connection per process, waking every ``get()`` waiting on a finished id."""

    def __init__(self, app: App) -> None:
        self._events: dict[str, set[threading.Event]] = {}
        self._lock = threading.Lock()
        self._listener = Listener(
            app.listen_dsn, [app.queries.done_channel], self._on_notify, self._wake_all,
            name="pgqueue-results",
            application_name=f"pgqueue:{app.schema}:results",
        )

    def start(self) -> None:
        self._listener.start()

    def is_alive(self) -> bool:
        return self._listener.is_alive()

    def stop(self) -> None:
        self._listener.stop()

    def register(self, job_id: str) -> threading.Event:
        # Listening must be in place before the caller reads the row, or a job finishing
        # between the read and the LISTEN would be waited on for a full interval.
        self._listener.ready.wait(10)
        event = threading.Event()
        with self._lock:
            self._events.setdefault(job_id, set()).add(event)
        return event

    def unregister(self, job_id: str, event: threading.Event) -> None:
        with self._lock:
            waiting = self._events.get(job_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._events[job_id]

    def _on_notify(self, channel: str, payload: str) -> None:
        with self._lock:
            if not self._events:
                return
            for job_id in payload.split(","):
                for event in self._events.get(job_id, ()):
                    event.set()

    def _wake_all(self) -> None:
        with self._lock:
            for events in self._events.values():
                for event in events:
                    event.set()
