"""OpenTelemetry tracing of publish and run, when the ``otel`` extra is installed.

Tracing is on when the application set a tracer provider (``trace.set_tracer_provider``,
or ``opentelemetry-instrument``), which needs the ``otel`` extra; otherwise every entry
point here returns None after a dictionary look-up (and an ``isinstance`` once
OpenTelemetry is imported), and nothing else is done per job.

Spans follow OpenTelemetry's messaging conventions (system ``pgqueue``, the queue as
destination, the task id as message id):

- ``send <queue>``: PRODUCER span around the insert of one job, whose context goes into
  the job's ``headers`` (``traceparent``, ``tracestate``: the global propagator's keys).
- a batch (``apply_many``, a group's members): ``send <queue>`` is a CLIENT span with
  ``messaging.batch.message_count``, and each job gets a ``create <queue>`` PRODUCER span,
  its own creation context. Canvas steps that run later get a ``create`` span when sent.
- ``process <queue>``: CONSUMER span around the run, the child of the job's creation
  context (another process's, usually). FAILURE sets status ERROR with an ``exception``
  event; a retry is a ``retry`` event; the outcome's state is ``pgqueue.task.state``.

Headers are written by producers and by plain SQL: anything but a reasonable text value
under a propagator's key is ignored, and a context that can't be read starts a new trace.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pgqueue
from pgqueue import states

if TYPE_CHECKING:
    from pgqueue.worker.execution import ClaimedJob, Outcome

logger = logging.getLogger("pgqueue.tracing")

SYSTEM = "pgqueue"
#: The longest header value read as trace context (a traceparent is 55 characters; a
#: tracestate at most 32 members of 256): longer text is garbage, never parsed.
MAX_HEADER_CHARS = 8192

# OpenTelemetry's modules, imported by _load() once a provider is found configured.
trace: Any = None
propagate: Any = None
otel_context: Any = None
SpanKind: Any = None
Status: Any = None
StatusCode: Any = None
_getter: Any = None

_cached: tuple[Any, Any] | None = None  # (provider, its tracer)
_UNKNOWN = object()
#: OpenTelemetry's variable naming a provider to load on first use.
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def tracer() -> Any:
    """The tracer of the configured provider, or None when tracing is off.

    A provider can only have been set by code that imported ``opentelemetry.trace``:
    until then this is one dictionary look-up, and pgqueue imports nothing of
    OpenTelemetry (nor tries to, job after job)."""
    global _cached
    api = sys.modules.get("opentelemetry.trace")
    if api is None:
        return None
    # get_tracer_provider() reads os.environ on each call while none is set (a few
    # microseconds a job): the API's own global says first whether one was.
    provider: Any = getattr(api, "_TRACER_PROVIDER", _UNKNOWN)
    if provider is None and not _PROVIDER_FROM_ENV:
        return None
    if provider is None or provider is _UNKNOWN:
        provider = api.get_tracer_provider()
    cached = _cached
    if cached is not None and cached[0] is provider:
        return cached[1]
    if isinstance(provider, (api.ProxyTracerProvider, api.NoOpTracerProvider)):
        return None
    if _getter is None:
        try:
            _load()
        except ImportError as exc:  # a provider but a broken install: trace nothing
            logger.warning("pgqueue traces nothing: %s", exc)
            _cached = (provider, None)
            return None
    found = provider.get_tracer("pgqueue", pgqueue.__version__)
    _cached = (provider, found)
    return found


def _load() -> None:
    global trace, propagate, otel_context, SpanKind, Status, StatusCode, _getter
    from opentelemetry import context
    from opentelemetry import propagate as propagation
    from opentelemetry import trace as api
    from opentelemetry.propagators.textmap import Getter

    class TextOnly(Getter[Any]):
        """Reads a job's headers as a propagator's carrier: a key whose value is not
        short text reads as absent (the SDK's own getter fails on a number, and takes a
        list as several values)."""

        def get(self, carrier: Any, key: str) -> list[str] | None:
            value = carrier.get(key)
            if isinstance(value, str) and len(value) <= MAX_HEADER_CHARS:
                return [value]
            return None

        def keys(self, carrier: Any) -> list[str]:
            return [key for key in carrier if isinstance(key, str)]

    trace, propagate, otel_context = api, propagation, context
    SpanKind, Status, StatusCode = api.SpanKind, api.Status, api.StatusCode
    _getter = TextOnly()


def _attributes(operation: str, queue: Any, task: str) -> dict[str, Any]:
    return {"messaging.system": SYSTEM, "messaging.operation.name": operation,
            "messaging.operation.type": operation,
            "messaging.destination.name": str(queue), "pgqueue.task.name": task}


def _carrier(headers: Any, span: Any) -> Any:
    """``headers`` (a dict or None) with the span's context added, as a new dict; as
    they were when the application's propagator fails (the job is sent all the same)."""
    carrier: dict[str, Any] = dict(headers) if isinstance(headers, dict) else {}
    try:
        propagate.inject(carrier, context=trace.set_span_in_context(span))
    except Exception as exc:
        logger.warning("the trace context was not added to a job's headers: %r", exc)
        return headers
    return carrier


class Publishing:
    """The spans of one batch of jobs being inserted: ``with`` it around the insert."""

    def __init__(self, tracer: Any, task: str, queue: Any, ids: list[str]) -> None:
        self.tracer, self.task, self.queue, self.ids = tracer, task, queue, ids
        attributes = _attributes("send", queue, task)
        if len(ids) == 1:
            attributes["messaging.message.id"] = ids[0]
            kind = SpanKind.PRODUCER
        else:
            attributes["messaging.batch.message_count"] = len(ids)
            kind = SpanKind.CLIENT  # each job's creation context is its create span
        self.span = tracer.start_span(f"send {queue}", kind=kind, attributes=attributes)

    def inject(self, rows: list[dict[str, Any]]) -> None:
        """Give each row's ``headers`` the context its run will be parented on."""
        if len(rows) == 1:
            rows[0]["headers"] = _carrier(rows[0].get("headers"), self.span)
            return
        parent = trace.set_span_in_context(self.span)
        for row, job_id in zip(rows, self.ids, strict=True):
            attributes = _attributes("create", self.queue, self.task)
            attributes["messaging.message.id"] = job_id
            created = self.tracer.start_span(f"create {self.queue}", context=parent,
                                             kind=SpanKind.PRODUCER, attributes=attributes)
            row["headers"] = _carrier(row.get("headers"), created)
            created.end()

    def __enter__(self) -> Publishing:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if exc is not None:
            self.span.record_exception(exc)
            self.span.set_status(Status(StatusCode.ERROR, _describe(exc)))
        self.span.end()


def publishing(task: str, queue: Any, rows: list[dict[str, Any]]) -> Publishing | None:
    """Spans for inserting ``rows``, jobs of ``task``, into ``queue``; None when off."""
    found = tracer()
    if found is None:
        return None
    return Publishing(found, task, queue, [row.get("task_id") or row["id"] for row in rows])


def inject_steps(steps: Iterable[dict[str, Any]]) -> None:
    """Canvas steps (jobs made later, by the database, when their turn comes): each
    gets a ``create`` span now and its context in the headers it will run with."""
    found = tracer()
    if found is None:
        return
    for step in steps:
        job = step["job"]
        attributes = _attributes("create", job.get("queue"), step["task"])
        attributes["messaging.message.id"] = str(step["id"])
        created = found.start_span(f"create {job.get('queue')}", kind=SpanKind.PRODUCER,
                                   attributes=attributes)
        job["headers"] = _carrier(job.get("headers"), created)
        created.end()


def _parent(headers: Any) -> Any:
    """The context a job's headers carry; an empty one (a new trace) when they carry
    none that can be read."""
    fresh = otel_context.Context()  # not the worker's current context: a root span
    if not isinstance(headers, dict) or not headers:
        return fresh
    try:
        found = propagate.extract(headers, context=fresh, getter=_getter)
    except Exception as exc:  # a propagator that fails on hostile text: start afresh
        logger.debug("trace context in a job's headers could not be read: %r", exc)
        return fresh
    return found


class Processing:
    """The CONSUMER span of one run: ``with`` it around the run, the outcome given to
    :meth:`ended`. The span is current meanwhile, so the task's own spans nest in it."""

    def __init__(self, tracer: Any, job: ClaimedJob) -> None:
        attributes = _attributes("process", job.queue, job.task)
        attributes["messaging.message.id"] = job.known_id
        attributes["pgqueue.task.attempt"] = job.attempt
        self.span = tracer.start_span(f"process {job.queue}", context=_parent(job.headers),
                                      kind=SpanKind.CONSUMER, attributes=attributes)
        self.token: Any = None

    def __enter__(self) -> Processing:
        self.token = otel_context.attach(trace.set_span_in_context(self.span))
        return self

    def ended(self, outcome: Outcome) -> Outcome:
        span = self.span
        span.set_attribute("pgqueue.task.state", outcome.state)
        if outcome.state == states.FAILURE:
            payload = outcome.result if isinstance(outcome.result, dict) else {}
            kind = payload.get("exc_type") or "Exception"
            module = payload.get("exc_module")
            span.add_event("exception", {
                "exception.type": f"{module}.{kind}" if module not in (None, "builtins")
                else str(kind),
                "exception.message": outcome.error or "",
                "exception.stacktrace": outcome.traceback or ""})
            span.set_status(Status(StatusCode.ERROR, outcome.error or str(kind)))
        elif outcome.state == states.RETRY:
            span.add_event("retry", {
                "pgqueue.retry.reason": outcome.error or "",
                "pgqueue.retry.eta": outcome.run_at.isoformat() if outcome.run_at else ""})
        elif outcome.state == states.REVOKED:
            span.add_event("revoked", {"pgqueue.revoked.reason": outcome.error or ""})
        return outcome

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            if exc is not None:  # a time limit, a termination, or a worker's fault
                self.span.record_exception(exc)
                self.span.set_status(Status(StatusCode.ERROR, _describe(exc)))
        finally:
            otel_context.detach(self.token)
            self.span.end()


def processing(job: ClaimedJob) -> Processing | None:
    """The span of running ``job``; None when tracing is off, or when the application's
    tracer fails to start it (the job runs all the same)."""
    found = tracer()
    if found is None:
        return None
    try:
        return Processing(found, job)
    except Exception as exc:
        logger.warning("no trace span for job %s: %r", job.id, exc)
        return None


def _describe(exc: BaseException) -> str:
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:  # a hostile __str__
        return type(exc).__name__
