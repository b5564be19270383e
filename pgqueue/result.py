"""Results: ``AsyncResult`` reads a job's state and waits for it on a notification."""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Protocol

from psycopg import sql

from pgqueue import db, limits, reads, states
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


def read_row(app: App, job_id: str | None, primary: bool = False) -> list[Any]:
    """The ``result_get`` rows of a job (by its row uuid, see :func:`limits.row_id`),
    without its arguments if the role may not see them. None (a string that cannot be a
    task id) has no rows. Read on the standby of ``result_read_dsn`` when there is one
    (it may lag), unless ``primary``."""
    if job_id is None:
        return []
    execute = app.execute if primary else functools.partial(reads.execute, app)

    def read(name: str) -> list[Any]:
        return read_bounded(app, name, job_id, execute)

    if app not in _arguments_hidden:
        try:
            return read("result_get")
        except PermissionDenied:
            rows = read("result_get_state")  # else: no grant at all
            _arguments_hidden.add(app)
            return rows
    return read("result_get_state")


class Execute(Protocol):
    """How a read runs a statement: ``App.execute`` or ``reads.execute`` (a standby)."""

    def __call__(self, name: str, params: dict[str, Any], query: bytes | None = None,
                 /) -> list[Any]: ...


def read_bounded(app: App, name: str, row_id: str, execute: Execute | None = None
                 ) -> list[Any]:
    """The rows of statement ``name`` (one of queries._bounded's) for ``row_id``: on
    partitioned results first in the two UTC days where a result of the id nearly
    always is (:func:`day_window`); then in the results since the time in the id
    (partitioned: those days only); nothing there, in the whole table: a producer's
    clock may be wrong and an id made up, so that no row is ever hidden. Only a UUIDv7
    has a time: any other is read whole."""
    run: Execute = app.execute if execute is None else execute
    params = {"id": row_id}
    if not has_time(row_id):
        return run(name, params)
    window = day_window([row_id]) if partitioned(app, run) else None
    if window is not None:
        rows = run(name, params, app.queries.window(name, *window))
        if rows or window[1] > datetime.now(timezone.utc):
            # (a result the bounded read would find and the window not would have
            # finished after the window, in the future: the whole table is next)
            return rows or run(name, params)
    bounded = "_recent" if db.prepare_threshold(app.dsn) is not None else "_recent_unprepared"
    return run(name + bounded, params) or run(name, params)


def has_time(row_id: str) -> bool:
    """Whether the row id is a UUIDv7 (canonical form, as limits.row_id gives it)."""
    return len(row_id) == 36 and row_id[14] == "7"


_DAY_MS = 86_400_000
_MARGIN_MS = 3_600_000  # result_id_since's hour for clocks (sql/migrations/0013)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def day_window(row_ids: list[str]) -> tuple[datetime, datetime] | None:
    """Whole UTC days, [start, end), where the results of ``row_ids`` (UUIDv7s) nearly
    always are: from the day of the earliest ``result_id_since`` (the time in the id less
    an hour) to the end of the day after the latest one's. Two days for one id: a job
    that finishes within a day of being made. None when the ids' days are more than a
    day apart (the window would name as many partitions as the bounded read) or a time
    lies past what a datetime holds. The day comes from the ids only; the statement
    gets it as a literal (queries.WINDOWED)."""
    try:
        days = [(int(i[:8] + i[9:13], 16) - _MARGIN_MS) // _DAY_MS for i in row_ids]
        first, last = min(days), max(days)
        return _window(first, last) if last - first <= 1 else None
    except (ValueError, OverflowError):  # min() of no ids; a time past year 9999
        return None


@functools.lru_cache(maxsize=64)
def _window(first: int, last: int) -> tuple[datetime, datetime]:
    """[day ``first``, the day after day ``last``], days counted from the epoch."""
    return _EPOCH + timedelta(days=first), _EPOCH + timedelta(days=last + 2)


# App -> (schema, when read, whether `results` is partitioned)
_layouts: weakref.WeakKeyDictionary[App, tuple[str, float, bool]] = weakref.WeakKeyDictionary()
LAYOUT_TTL = 60.0


def partitioned(app: App, execute: Execute | None = None) -> bool:
    """Whether the app's ``results`` is partitioned (``pgqueue migrate
    --partition-results``), read from the catalog at most once a minute per app. Either
    answer reads every row: a conversion seen late only costs the reads of that minute
    their window."""
    schema = app.schema
    known = _layouts.get(app)
    now = time.monotonic()
    if known is not None and known[0] == schema and now - known[1] < LAYOUT_TTL:
        return known[2]
    run: Execute = app.execute if execute is None else execute
    table = sql.Identifier(schema, "results").as_string(None)
    try:
        rows = run("result_partitioned", {"table": table})
    except PermissionDenied:  # no USAGE on the schema: the read itself says which grant
        rows = []
    answer = bool(rows and rows[0][0])
    _layouts[app] = (schema, now, answer)
    return answer


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
    #: False: one job (a :class:`GroupResult` says True).
    is_group: bool = False
    #: The previous step, when this result came from sending a workflow.
    _parent: Any = None
    #: Read the primary even with a standby (after ``retry()``: read your own write).
    _on_primary: bool = False

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

    def _meta(self, primary: bool = False) -> ResultMeta:
        # Read anew every time, final states too: a job sent again under the same id
        # makes a final state current no longer (one primary-key read). On the standby
        # of result_read_dsn when there is one: the state may lag by its replay lag.
        return meta_from_row(current_row(read_row(self.app, self.row_id,
                                                  primary or self._on_primary)))

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
        are rows) and ``follow_parents`` (a chain's later steps hold the exception of
        the step that failed already) are
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
        on_standby = reads.standby_pool(self.app) is not None

        def read(confirm: bool = False) -> ResultMeta:
            meta = self._meta()
            if confirm and on_standby and not meta.ready:
                # Told the job finished (or listening just began, so a finish may have
                # been announced before), and the standby has not replayed it yet: the
                # primary has it, and a wait never returns a stale state.
                meta = self._meta(primary=True)
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
        woken = True
        try:
            while True:
                event.clear()
                meta = read(confirm=woken)
                if meta.ready:
                    return meta
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"the job {self.id} did not finish within {timeout}s "
                                       f"(state {meta.state})")
                woken = event.wait(interval if remaining is None else min(interval, remaining))
                if on_interval is not None:
                    on_interval()
        finally:
            waiter.unregister(row_id, event)

    def forget(self) -> None:
        """Delete the stored result."""
        if self.row_id is not None:
            read_bounded(self.app, "result_forget", self.row_id)

    def retry(self) -> AsyncResult:
        """Send this job again under the same id, if it ended FAILURE or REVOKED (else
        ValueError, saying why); returns this result, which now reads the new run. The
        old outcome is kept in :meth:`history`. This handle reads the primary from now
        on: a standby may still show the old outcome (see ``result_read_dsn``)."""
        self.app.retry([self.id])
        self._on_primary = True
        return self

    def history(self) -> list[dict[str, Any]]:
        """The outcomes that retries by hand replaced, oldest first: ``state``,
        ``attempt``, ``error``, ``traceback``, ``result``, ``worker``, ``started_at``,
        ``finished_at``, ``retried_at``, ``retried_by`` (rows of ``job_history``)."""
        names = ("state", "attempt", "error", "traceback", "result", "worker",
                 "started_at", "finished_at", "retried_at", "retried_by")
        return [dict(zip(names, row, strict=True))
                for row in self.app.execute("job_history_get", {"id": self.row_id})]

    # -- workflows ------------------------------------------------------------------------
    @property
    def parent(self) -> Any:
        """The step before this one (an AsyncResult, or the GroupResult of a chord's
        header), from the workflow as sent or else from the stored ``parent_id``."""
        if self._parent is None:
            if self.row_id is None:
                return None
            rows = read_bounded(self.app, "result_parent", self.row_id)
            parent_id = next((r[0] for r in rows if r[0]), None)
            if parent_id is not None:
                self._parent = (GroupResult.restore(parent_id, app=self.app, missing=None)
                                or AsyncResult(parent_id, app=self.app))
        return self._parent

    @parent.setter
    def parent(self, value: Any) -> None:
        self._parent = value

    def revoke_workflow(self, terminate: bool = False, signal: str | None = None) -> list[str]:
        """Revoke every step of the workflow this job is part of (a chain, a chord, a
        group, with their links) that has not started; started ones too with
        ``terminate``. Returns the ids revoked."""
        if self.row_id is None:
            return []
        rows = self.app.execute("workflow_unstarted", {"id": self.row_id})
        ids = [r[0] for r in rows]
        if terminate:
            self.app.control.revoke([self.id, *ids], terminate=True, signal=signal)
            return ids
        if ids:
            self.app.control.revoke(ids)
        return ids

    @property
    def children(self) -> list[AsyncResult]:
        """The jobs whose parent this is: the next step of its chain, its link callbacks,
        a chord body waiting for it (sent, finished, or still waiting)."""
        if self.row_id is None:
            return []
        rows = self.app.execute("result_children", {"id": self.row_id})
        return [AsyncResult(r[0], app=self.app, task_name=r[1]) for r in rows]

    def collect(self, intermediate: bool = False, **get_options: Any) -> Any:
        """Yield ``(result, value)`` for this job and then its children, depth first,
        waiting for each as ``get()`` does (Celery's ``collect``)."""
        seen: set[str] = set()
        todo: list[AsyncResult] = [self]
        while todo:
            result = todo.pop(0)
            if result.id in seen:
                continue
            seen.add(result.id)
            yield result, result.get(**get_options)
            todo[:0] = result.children

    def iterdeps(self) -> Any:
        """``(parent, child)`` pairs of this job's tree, without waiting."""
        todo: list[tuple[AsyncResult | None, AsyncResult]] = [(None, self)]
        while todo:
            parent, node = todo.pop(0)
            yield parent, node
            todo += [(node, child) for child in node.children]

    @property
    def graph(self) -> dict[str, list[str]]:
        """id -> ids of its children, for this job's tree."""
        graph: dict[str, list[str]] = {}
        for parent, node in self.iterdeps():
            graph.setdefault(node.id, [])
            if parent is not None:
                graph[parent.id].append(node.id)
        return graph

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

    def _meta(self, primary: bool = False) -> ResultMeta:
        return self._known

    def forget(self) -> None:
        pass

    @property
    def parent(self) -> Any:
        return self._parent

    @parent.setter
    def parent(self, value: Any) -> None:
        self._parent = value

    @property
    def children(self) -> list[AsyncResult]:
        return []


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

    def register_many(self, job_ids: list[str]) -> threading.Event:
        """One event woken when any of ``job_ids`` finishes (a GroupResult's wait)."""
        self._listener.ready.wait(10)
        event = threading.Event()
        with self._lock:
            for job_id in job_ids:
                self._events.setdefault(job_id, set()).add(event)
        return event

    def unregister_many(self, job_ids: list[str], event: threading.Event) -> None:
        for job_id in job_ids:
            self.unregister(job_id, event)

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


def _found(rows: list[Any], ids: list[str]) -> tuple[list[Any], list[str]]:
    """The final rows among ``rows`` (a "result_get_many_recent" answer), and the ids
    with no row there, neither final nor live."""
    seen = {row[0] for row in rows}
    return [row for row in rows if row[1] is not None], [i for i in ids if i not in seen]


class ResultSet:
    """Several results handled together: wait for all, read their states at once."""

    is_group = False

    def __init__(self, results: list[Any], app: App | None = None, **_: Any) -> None:
        if app is None:
            from pgqueue.app import current_app

            app = current_app()
        self.app = app
        self.results: list[Any] = list(results)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: [{', '.join(str(r.id) for r in self.results)}]>"

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Any:
        return iter(self.results)

    def __getitem__(self, index: int) -> Any:
        return self.results[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ResultSet):
            return other.results == self.results
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(r.id for r in self.results))

    def add(self, result: Any) -> None:
        if result not in self.results:
            self.results.append(result)

    def discard(self, result: Any) -> None:
        if result in self.results:
            self.results.remove(result)

    remove = discard

    def clear(self) -> None:
        self.results.clear()

    def _leaves(self) -> list[AsyncResult]:
        """The member jobs, nested sets flattened."""
        leaves: list[AsyncResult] = []
        for result in self.results:
            if isinstance(result, ResultSet):
                leaves += result._leaves()
            else:
                leaves.append(result)
        return leaves

    def _states(self) -> dict[str, ResultMeta]:
        """Each member's current reading: one query for the finished ones, one read per
        member still live."""
        leaves = self._leaves()
        ids = [r.row_id for r in leaves if r.row_id is not None]
        found: dict[str, ResultMeta] = {}
        for start in range(0, len(ids), 5000):
            for job_id, state, result, error, traceback, finished_at in self._finals(
                    ids[start:start + 5000]):
                if state == states.FAILURE:
                    result = rebuild_exception(result, error)
                elif state == states.REVOKED:
                    result = TaskRevokedError(error or "revoked")
                found[job_id] = ResultMeta(state, result, traceback, finished_at,
                                           error=error)
        by_id: dict[str, ResultMeta] = {}
        for result in leaves:
            if isinstance(result, EagerResult):
                by_id[result.id] = result._meta()
            else:
                by_id[result.id] = found.get(result.row_id or "") or ResultMeta(states.PENDING)
        return by_id

    def _finals(self, ids: list[str]) -> list[Any]:
        """The ``result_get_many`` rows of ``ids``: on partitioned results first in the
        UTC days of their ids (:func:`day_window`), then in the results since the
        earliest time in them, then, for the ids neither found there nor live, in the
        whole table (see :func:`read_bounded`)."""
        app = self.app
        if not all(has_time(i) for i in ids):
            return app.execute("result_get_many", {"ids": ids})
        finals: list[Any] = []
        window = day_window(ids) if partitioned(app) else None
        if window is not None:
            rows = app.execute("result_get_many", {"ids": ids},
                               app.queries.window("result_get_many", *window))
            finals, ids = _found(rows, ids)
            if not ids:
                return finals
            if window[1] > datetime.now(timezone.utc):  # see read_bounded
                return finals + app.execute("result_get_many", {"ids": ids})
        more, unseen = _found(app.execute("result_get_many_recent", {"ids": ids}), ids)
        finals += more
        if unseen:
            finals += app.execute("result_get_many", {"ids": unseen})
        return finals

    def completed_count(self) -> int:
        """How many members succeeded."""
        return sum(1 for m in self._states().values() if m.state == states.SUCCESS)

    def ready(self) -> bool:
        return all(m.ready for m in self._states().values())

    def successful(self) -> bool:
        return all(m.state == states.SUCCESS for m in self._states().values())

    def failed(self) -> bool:
        return any(m.state == states.FAILURE for m in self._states().values())

    def waiting(self) -> bool:
        return not self.ready()

    def revoke(self, terminate: bool = False, signal: str | None = None, **kwargs: Any) -> None:
        """Revoke every member (the steps after them too); started ones only with
        ``terminate``."""
        ids = [r.id for r in self._leaves()]
        if ids:
            self.app.control.revoke(ids, terminate=terminate, signal=signal, **kwargs)

    def forget(self) -> None:
        for result in self._leaves():
            result.forget()

    def get(self, timeout: float | None = None, propagate: bool = True,
            interval: float = 1.0, disable_sync_subtasks: bool = True,
            callback: Callable[[str, Any], Any] | None = None, **_: Any) -> list[Any]:
        """The members' values in order, once all are final. Woken by the completion
        notifications; raises the first failure in order (``propagate``)."""
        return self.join(timeout, propagate, interval, callback,
                         disable_sync_subtasks=disable_sync_subtasks)

    def join(self, timeout: float | None = None, propagate: bool = True,
             interval: float = 1.0, callback: Callable[[str, Any], Any] | None = None,
             disable_sync_subtasks: bool = True, **_: Any) -> list[Any]:
        from pgqueue.request import inside_task

        if disable_sync_subtasks and inside_task.get():
            raise RuntimeError("Never call result.get() within a task: it can deadlock the "
                               "worker. Chain the work or pass disable_sync_subtasks=False.")
        metas = self._wait_all(timeout, interval)
        values = []
        for result in self.results:
            if isinstance(result, ResultSet):
                value = result.join(0, propagate, interval, callback, disable_sync_subtasks)
            else:
                meta = metas[result.id]
                if propagate and meta.state in states.PROPAGATE_STATES:
                    assert isinstance(meta.result, BaseException)
                    raise meta.result
                value = meta.result
                if callback is not None:
                    callback(result.id, value)
            values.append(value)
        return values

    join_native = join

    def _wait_all(self, timeout: float | None, interval: float) -> dict[str, ResultMeta]:
        metas = self._states()
        pending = [i for i, m in metas.items() if not m.ready]
        if not pending:
            return metas
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = self.app.result_waiter
        rows = [limits.row_id(i) or i for i in pending]
        event = waiter.register_many(rows)
        try:
            while True:
                event.clear()
                metas = self._states()
                pending = [i for i, m in metas.items() if not m.ready]
                if not pending:
                    return metas
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"{len(pending)} of {len(metas)} jobs did not finish "
                                       f"within {timeout}s (first: {pending[0]})")
                event.wait(interval if remaining is None else min(interval, remaining))
        finally:
            waiter.unregister_many(rows, event)

    def iterate(self, timeout: float | None = None, propagate: bool = True,
                interval: float = 1.0) -> Any:
        yield from self.join(timeout, propagate, interval)

    @property
    def supports_native_join(self) -> bool:
        return True


class GroupResult(ResultSet):
    """The result of a group: its id (the members' ``group_id``) and its members' results,
    in the group's order. ``save()`` stores the membership, ``restore(id)`` reads it back
    (a group sent as a workflow is saved already)."""

    is_group = True

    def __init__(self, id: str | None = None, results: list[Any] | None = None,
                 parent: Any = None, app: App | None = None, **kwargs: Any) -> None:
        super().__init__(results or [], app=app)
        from pgqueue.utils import uuid

        self.id = str(id) if id is not None else uuid()
        self._parent = parent

    @property
    def parent(self) -> Any:
        return self._parent

    @parent.setter
    def parent(self, value: Any) -> None:
        self._parent = value

    @property
    def children(self) -> list[Any]:
        return self.results

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(str(r.id) for r in self.results)}]>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GroupResult):
            return other.id == self.id and other.results == self.results
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def save(self, backend: Any = None) -> GroupResult:
        """Store the membership, so that ``GroupResult.restore(id)`` finds it."""
        from pgqueue.utils import json_dumps

        self.app.execute("canvas_group_insert", {"groups": json_dumps(
            [{"id": self.id, "members": [r.row_id or r.id for r in self._leaves()]}])})
        return self

    def delete(self, backend: Any = None) -> None:
        self.app.execute("canvas_group_forget", {"id": self.id})

    @classmethod
    def restore(cls, id: str, backend: Any = None, app: App | None = None,
                **kwargs: Any) -> Any:
        """The saved group ``id``; None if it was never saved (or was deleted)."""
        if app is None:
            from pgqueue.app import current_app

            app = current_app()
        try:
            rows = app.execute("canvas_group_get", {"id": str(id)})
        except Exception as error:  # an id that is no uuid names no saved group
            if type(error).__name__ in ("InvalidTextRepresentation", "DataError"):
                return kwargs.get("missing")
            raise
        if not rows:
            return kwargs.get("missing")
        return cls(id, [AsyncResult(m, app=app) for m in rows[0][0]], app=app)

    def as_tuple(self) -> tuple[Any, ...]:
        return ((self.id, None), [r.id for r in self.results])
