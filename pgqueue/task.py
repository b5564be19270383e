"""Tasks: ``@app.task`` turns a function into a :class:`Task` that can be sent to workers."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from pgqueue import celery_compat, limits, states
from pgqueue.exceptions import ExceptionInfo, MaxRetriesExceededError, Retry, Snooze
from pgqueue.request import Request
from pgqueue.utils import storable_json

if TYPE_CHECKING:
    from pgqueue.app import App
    from pgqueue.canvas import Signature
    from pgqueue.result import AsyncResult

#: Options ``@app.task`` accepts: those pgqueue/celery_compat.py does not refuse.
TASK_OPTIONS = celery_compat.accepted(celery_compat.TASK_OPTIONS)
_UNSUPPORTED_TASK_OPTIONS = celery_compat.reasons(celery_compat.TASK_OPTIONS,
                                                  celery_compat.REFUSED)


def check_task_options(options: dict[str, Any], where: str) -> None:
    limits.check_names(where, options, TASK_OPTIONS, _UNSUPPORTED_TASK_OPTIONS,
                       kind="task option")
    limits.check_options(where, options)
    celery_compat.warn_ignored("task option", options, celery_compat.TASK_OPTIONS)


def exponential_backoff(factor: float, retries: int, maximum: float, full_jitter: bool) -> float:
    """Celery's backoff: ``factor * 2**retries`` capped at ``maximum``, optionally jittered."""
    countdown = float(min(maximum, factor * (2**retries)))
    if full_jitter:
        countdown = random.uniform(0, countdown)
    return max(0.0, countdown)


class Task:
    """A unit of work; subclass it (``base=``) to share behaviour between tasks."""

    name: str = ""
    app: App
    typing: bool = True
    queue: str | None = None
    priority: int | None = None
    max_retries: int | None = 3
    #: None: the ``task_default_retry_delay`` setting (180 seconds unless set).
    default_retry_delay: float | None = None
    autoretry_for: tuple[type[BaseException], ...] = ()
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    retry_kwargs: dict[str, Any] = {}
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600
    retry_jitter: bool = True
    ignore_result: bool | None = None
    expires: float | timedelta | datetime | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    track_started: bool | None = None
    lease: float | None = None
    acks_late: bool = True
    serializer: str = "json"
    #: Starts allowed fleet-wide (Celery's ``"10/m"``); see docs/flow-control.md.
    rate_limit: str | float | None = None
    #: Jobs sharing a ``concurrency_key`` that may run at once (default 1: a mutex).
    concurrency_limit: int | None = None

    #: Whether an abort request can end this task REVOKED (``AbortableTask`` sets it).
    abortable: ClassVar[bool] = False
    abstract: ClassVar[bool] = True
    _request_var: ContextVar[Request]

    def __init__(self) -> None:
        self._request_var = ContextVar(f"pgqueue.request:{self.name}")

    # -- calling ------------------------------------------------------------------------
    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"task {self.name!r} has no run() method")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task here and now, like calling the function.

        Workers and ``apply()`` run every task through here too, so an override wraps
        each run (Flask's ``ContextTask``: ``with app.app_context(): return
        self.run(*args, **kwargs)``). For an ``async def`` task it returns the coroutine;
        awaiting it runs the task."""
        if self._request_var.get(None) is not None:  # a worker's run: its request is set
            return self.run(*args, **kwargs)
        token = self.push_request(Request(task=self.name, args=list(args), kwargs=kwargs))
        try:
            return self.run(*args, **kwargs)
        finally:
            self.pop_request(token)

    # -- hooks: called by the worker and apply(), in Celery's order (docs/signals.md) ------
    def before_start(self, task_id: str, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """Before the task runs. What it raises is the job's outcome, and the task
        does not run (as in Celery)."""

    def on_success(self, retval: Any, task_id: str, args: Sequence[Any],
                   kwargs: dict[str, Any]) -> None:
        """After the task returned ``retval``. What it raises is logged, never the outcome."""

    def on_failure(self, exc: BaseException, task_id: str, args: Sequence[Any],
                   kwargs: dict[str, Any], einfo: ExceptionInfo) -> None:
        """After the task failed with ``exc``; ``einfo.traceback`` is the formatted
        traceback. What it raises is logged, never the outcome."""

    def on_retry(self, exc: BaseException | None, task_id: str, args: Sequence[Any],
                 kwargs: dict[str, Any], einfo: ExceptionInfo) -> None:
        """After the task asked to be retried; ``exc`` is the ``exc`` given to
        ``retry()``. What it raises is logged, never the outcome."""

    def after_return(self, status: str, retval: Any, task_id: str, args: Sequence[Any],
                     kwargs: dict[str, Any], einfo: ExceptionInfo | None) -> None:
        """After a run that ended SUCCESS or FAILURE (not RETRY), after ``on_success`` or
        ``on_failure``; ``retval`` is the return value or the exception, ``einfo`` is
        set for a FAILURE. What it raises is logged, never the outcome."""

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"

    @property
    def request(self) -> Request:
        try:
            return self._request_var.get()
        except LookupError:
            return Request(task=self.name)

    def push_request(self, request: Request) -> Any:
        return self._request_var.set(request)

    def pop_request(self, token: Any) -> None:
        self._request_var.reset(token)

    # -- sending ------------------------------------------------------------------------
    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Send the task to a worker with these arguments (``apply_async`` shortcut)."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send the task. Options: ``countdown``, ``eta``, ``expires``, ``priority``,
        ``queue``, ``task_id``, ``ignore_result``, ``connection`` (enqueue inside that
        transaction), ``unique_key``, ``lease``, ``time_limit``, ``soft_time_limit``."""
        if "link" in options or "link_error" in options:
            return self.signature(args, kwargs).apply_async(**options)  # type: ignore[no-any-return]
        if self.app.conf["task_always_eager"] and options.get("connection") is None:
            return self.apply(args, kwargs, task_id=options.get("task_id"))
        return self.app.send_task(self.name, args, kwargs, _task=self, **options)

    def apply_many(
        self,
        calls: Iterable[tuple[Sequence[Any], dict[str, Any]] | Sequence[Any]],
        **options: Any,
    ) -> list[AsyncResult]:
        """Send many calls in one statement: ``[(args, kwargs), ...]`` or ``[args, ...]``."""
        return self.app.send_many(self.name, calls, _task=self, **options)

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        task_id: str | None = None,
        throw: bool | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Run the task in this process, as a worker would, and return its result.

        A failure raises the task's exception when ``throw`` is true (default: the
        ``task_eager_propagates`` setting), as in Celery."""
        from pgqueue.worker.execution import run_eagerly

        result = run_eagerly(self, list(args or ()), dict(kwargs or {}), task_id)
        if throw is None:
            throw = bool(self.app.conf.task_eager_propagates)
        if throw and result.state == states.FAILURE and isinstance(result.result,
                                                                   BaseException):
            raise result.result
        return result

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature of this task with these arguments (for schedules and canvas)."""
        return _Signature().quick(self.name, args, kwargs, self.app)

    def signature(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Signature:
        from pgqueue.canvas import Signature

        immutable = bool(options.pop("immutable", False))
        return Signature(self.name, tuple(args or ()), dict(kwargs or {}), options,
                         app=self.app, immutable=immutable)

    subtask = signature

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: in a chain it ignores the previous step's result."""
        return _Signature().quick(self.name, args, kwargs, self.app, immutable=True)

    def map(self, it: Iterable[Any]) -> Signature:
        """One job calling this task once per item of ``it``; its result is the list."""
        from pgqueue.canvas import xmap

        return xmap(self.s(), it, app=self.app)

    def starmap(self, it: Iterable[Any]) -> Signature:
        """One job calling this task once per item of ``it``, each item its arguments."""
        from pgqueue.canvas import xstarmap

        return xstarmap(self.s(), it, app=self.app)

    def chunks(self, it: Iterable[Any], n: int) -> Signature:
        """The calls of ``it`` (each item the arguments of one call) in jobs of ``n``."""
        from pgqueue.canvas import chunks

        return chunks(self.s(), it, n, app=self.app)

    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802 - Celery's name
        from pgqueue.result import AsyncResult

        return AsyncResult(task_id, app=self.app, task_name=self.name)

    # -- inside a running task ------------------------------------------------------------
    def retry(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Retry:
        """Ask for this job to run again later; ``raise self.retry(exc=exc)``.

        Raises ``exc`` (or :class:`MaxRetriesExceededError`) when no retries are left:
        ``max_retries`` given here, else the job's (``apply_async(max_retries=...)``),
        else the task's.
        """
        request = self.request
        if request.called_directly:
            if exc is not None:
                raise exc
            raise RuntimeError(f"{self.name}.retry() called outside a worker")
        if max_retries is not None:
            limit: int | None = max_retries
        elif request.max_retries_given:  # apply_async(max_retries=...) wins over the task's
            limit = request.max_retries
        else:
            limit = self.max_retries
        if limit is not None and request.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"Can't retry {self.name}[{request.id}] args:{request.args} "
                f"kwargs:{request.kwargs}: max_retries={limit} reached"
            )
        when: float | datetime
        if eta is not None:
            when = eta
        elif countdown is not None:
            when = countdown
        else:
            when = self.retry_delay()
        signal = Retry(
            exc=exc,
            when=when,
            args_override=list(args) if args is not None else None,
            kwargs_override=dict(kwargs) if kwargs is not None else None,
        )
        if throw:
            raise signal
        return signal

    def snooze(self, seconds: float | timedelta, throw: bool = True) -> Snooze:
        """Put this job off for ``seconds`` without spending an attempt:
        ``raise self.snooze(30)``. The job waits (scheduled) and runs again with the same
        ``request.retries``; ``max_retries`` is not touched. ``seconds``: from 0 to
        100 years (a number or a timedelta), checked here."""
        what = f"{self.name}.snooze()"
        if isinstance(seconds, timedelta):
            seconds = seconds.total_seconds()
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
            raise TypeError(f"{what} takes a number of seconds or a timedelta, "
                            f"not {limits.show(seconds)}")
        if not 0 <= seconds <= limits.MAX_DELAY:  # NaN fails both comparisons
            raise ValueError(f"{what}: seconds must be from 0 to {limits.MAX_DELAY:,} "
                             f"(100 years), got {limits.show(seconds)}")
        if self.request.called_directly:
            raise RuntimeError(f"{what} called outside a worker: there is no job to put off")
        signal = Snooze(float(seconds))
        if throw:
            raise signal
        return signal

    def autoretry_countdown(self) -> float:
        """Countdown before the next automatic retry, from the backoff options."""
        if "countdown" in self.retry_kwargs:
            return float(self.retry_kwargs["countdown"])
        if self.retry_backoff:
            factor = 1.0 if self.retry_backoff is True else float(self.retry_backoff)
            return exponential_backoff(
                factor, self.request.retries, self.retry_backoff_max, self.retry_jitter
            )
        return self.retry_delay()

    def retry_delay(self) -> float:
        """``default_retry_delay``, or the ``task_default_retry_delay`` setting."""
        if self.default_retry_delay is not None:
            return float(self.default_retry_delay)
        return float(self.app.conf.task_default_retry_delay)

    def update_state(
        self,
        task_id: str | None = None,
        state: str | None = None,
        meta: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Publish progress (``state='PROGRESS', meta={...}``), visible to ``AsyncResult``.

        Raises TypeError or ValueError, here, for a state or meta the database cannot
        store (not JSON, NUL, lone surrogates, too deep, over ``result_max_bytes``)."""
        from pgqueue.client.producer import update_progress

        what = f"{self.name}: update_state"
        if state is not None:
            storable_json(state, f"{what} state")
        if meta is not None:
            storable_json(meta, f"{what} meta", self.app.conf["result_max_bytes"],
                          "result_max_bytes")
        update_progress(self, task_id, state or states.STARTED, meta)

    def send_event(self, *args: Any, **kwargs: Any) -> None:
        """Accepted for Celery compatibility; progress lives in ``update_state``."""


_signature_class: list[type[Signature]] = []


def _Signature() -> type[Signature]:  # noqa: N802 - stands for the class
    """pgqueue.canvas.Signature, imported once (``s()`` is called once per group member)."""
    if not _signature_class:
        from pgqueue.canvas import Signature

        _signature_class.append(Signature)
    return _signature_class[0]


def make_task_class(
    app: App, fun: Callable[..., Any], options: dict[str, Any], name: str
) -> type[Task]:
    """Build the Task subclass for ``fun`` (Celery builds one class per task too)."""
    base: type[Task] = options.pop("base", None) or app.Task
    bind = options.pop("bind", False)
    attrs: dict[str, Any] = {
        "name": name,
        "app": app,
        "run": fun if bind else staticmethod(fun),
        "abstract": False,
        "__doc__": fun.__doc__,
        "__module__": fun.__module__,
        "__wrapped__": fun,
        "__qualname__": fun.__qualname__,
    }
    for key in ("shared", "typing", "trail", "reject_on_worker_lost",
                "store_errors_even_if_ignored"):
        options.pop(key, None)
    for key in ("autoretry_for", "dont_autoretry_for"):
        if key in options:
            options[key] = tuple(options[key])
    attrs.update(options)
    return type(fun.__name__, (base,), attrs)
