"""Celery's events over NOTIFY: ``pgqueue worker -E`` (or ``worker_send_task_events``,
``enable_events``) and ``task_send_sent_event`` publish them; ``pgqueue events`` and
``app.events.Receiver`` receive them.

Every event is one NOTIFY on ``<schema>.events`` whose payload is a JSON object with
Celery's fields (``type``, ``hostname``, ``timestamp``, ``pid``, ``clock``, and per type
``uuid``, ``name``, ``args``, ``result``, ``runtime``, ``exception``...). A payload stays
under Postgres' 8000-byte limit: arguments and results travel as reprs cut at 1024
characters (as Celery's ``argsrepr``), and what is still too long (a traceback) is cut.

Publishing costs nothing while events are off, or on with nobody listening: the worker
checks one flag, which says whether a receiver announced itself in the database in the
last seconds (pgqueue.event_listeners; Postgres cannot tell who LISTENs). When someone
listens, a dispatcher thread sends what accumulated in one statement, in order, while
the claim loop goes on. Events are best-effort, as in Celery: a failed send is logged
and dropped. Any role that can connect may NOTIFY,
so an event tells what happened only as far as you trust the database's users.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import platform
import reprlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

from pgqueue import __version__, db
from pgqueue.db import queries
from pgqueue.event_listeners import RECHECK, Registration, listening

if TYPE_CHECKING:
    from pgqueue.app import App

logger = logging.getLogger("pgqueue.events")
T = TypeVar("T")

TASK_EVENTS = ("task-sent", "task-received", "task-started", "task-succeeded",
               "task-failed", "task-retried", "task-revoked", "task-rejected")
WORKER_EVENTS = ("worker-online", "worker-heartbeat", "worker-offline")
#: NOTIFY refuses payloads of 8000 bytes or more; room is left for the channel name.
MAX_PAYLOAD = 7800
#: Celery's cut for argsrepr, kwargsrepr and the result's repr.
REPR_MAX = 1024
#: Seconds between worker-heartbeat events (Celery's default).
HEARTBEAT = 2.0
#: Seconds an event may wait for others to go out in the same statement.
LINGER = 0.02



def json_encoder(item_separator: str = ",", key_separator: str = ":"
                 ) -> Callable[[Any], str]:
    """``json.dumps(value, separators=(item_separator, key_separator), default=str)``,
    its C encoder built once: ``JSONEncoder.encode`` builds one on every call, which cost
    as much as the encoding of an event. No check for cycles (events are flat; a cycle
    in a custom event's field raises RecursionError instead of ValueError)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    fallback = json.JSONEncoder(separators=(item_separator, key_separator),
                                default=str).encode
    if make is None:  # an interpreter without the C accelerator
        return fallback
    try:
        encoder = make(None, str, json.encoder.encode_basestring_ascii, None, key_separator,
                       item_separator, False, False, True)
    except TypeError:  # its private signature changed
        return fallback
    return lambda value: "".join(encoder(value, 0))


_json = json_encoder()
_quote = json.encoder.encode_basestring_ascii  # a str as a JSON string, ASCII only
#: The fields :meth:`EventDispatcher.send` writes itself (given ones take their place).
_HEAD = frozenset(("type", "hostname", "timestamp", "utcoffset", "pid", "clock"))
_repr = reprlib.Repr()
_repr.maxstring = REPR_MAX
_repr.maxother = REPR_MAX
_repr.maxlist = _repr.maxtuple = _repr.maxdict = 100


def short(value: Any) -> str:
    """A repr of at most :data:`REPR_MAX` characters (JSON-decoded arguments and results:
    plain ``repr`` is fastest; deep or huge ones go through :mod:`reprlib`)."""
    try:
        text = repr(value) if not isinstance(value, (list, dict, tuple)) or len(value) < 100 \
            else _repr.repr(value)
    except RecursionError:
        text = _repr.repr(value)
    return text if len(text) <= REPR_MAX else text[:REPR_MAX - 3] + "..."


def encode(event: dict[str, Any]) -> str:
    """``event`` as a NOTIFY payload under :data:`MAX_PAYLOAD` bytes: long text fields
    are cut (the end of a traceback is kept, where the error is). One line of ASCII:
    a batch travels as its payloads joined by newlines."""
    text = _json(event)  # ASCII (ensure_ascii): its length is its size in bytes
    if len(text) < MAX_PAYLOAD:
        return text
    event = dict(event)
    for room in (2000, 500, 100):
        for key in ("traceback", "exception", "result", "args", "kwargs", "name"):
            value = event.get(key)
            if isinstance(value, str) and len(value) > room:
                event[key] = ("..." + value[-room:]) if key == "traceback" \
                    else value[:room] + "..."
        text = json.dumps(event, separators=(",", ":"), default=str)
        if len(text.encode()) < MAX_PAYLOAD:
            return text
    return json.dumps({k: event[k] for k in ("type", "hostname", "timestamp", "pid", "clock",
                                             "uuid") if k in event},
                      separators=(",", ":"), default=str)


class EventDispatcher:
    """Sends events from one process (a worker, or a producer's ``task-sent``).

    ``wanted``: events are on (``-E``, ``enable_events``). ``enabled``: they are on and
    some receiver listens (looked at every :data:`RECHECK` seconds by the dispatcher
    thread); callers check it before building an event. Worker events (online, heartbeat
    every :data:`HEARTBEAT` seconds, offline) are sent from the first :meth:`enable` on,
    while someone listens.
    """

    def __init__(self, app: App, hostname: str, enabled: bool = False,
                 heartbeat: Callable[[], dict[str, Any]] | None = None) -> None:
        self.app = app
        self.hostname = hostname
        self.wanted = False
        self.enabled = False
        self.worker_events = False
        self._heartbeat = heartbeat
        self._buffer: list[str] = []
        self._cond = threading.Condition(threading.Lock())
        self._clock = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.sent = 0
        self.pid = os.getpid()  # workers send from their own process, never a child
        if enabled:
            self.enable()

    def enable(self) -> None:
        self.wanted = True
        self.enabled = listening(self.app)
        if self._heartbeat is not None and not self.worker_events:
            self.worker_events = True
            self.send("worker-online", **self._heartbeat())
        self._start()

    def disable(self) -> None:
        self.wanted = self.enabled = False

    def send(self, type: str, **fields: Any) -> None:  # noqa: A002 - Celery's name
        """Queue one event for sending; dropped while nobody listens (callers check
        :attr:`enabled` first, to skip building it)."""
        if not self.enabled:
            return
        payload = self._payload(type, fields)
        with self._cond:
            self._buffer.append(payload)
            if len(self._buffer) == 1:
                self._cond.notify()
        if self._thread is None:
            self._start()

    def _payload(self, type: str, fields: dict[str, Any]) -> str:  # noqa: A002
        """The event as :func:`encode` makes it. The fields every event has are written
        as text, not put in a dict for the encoder: a worker sends three events a job."""
        timestamp, clock = time.time(), next(self._clock)
        if isinstance(type, str) and isinstance(self.hostname, str) \
                and _HEAD.isdisjoint(fields):
            text = (f'{{"type":{_quote(type)},"hostname":{_quote(self.hostname)},'
                    f'"timestamp":{timestamp!r},"utcoffset":0,"pid":{self.pid},'
                    f'"clock":{clock}')
            text += "," + _json(fields)[1:] if fields else "}"
            if len(text) < MAX_PAYLOAD:
                return text
        return encode({"type": type, "hostname": self.hostname, "timestamp": timestamp,
                       "utcoffset": 0, "pid": self.pid, "clock": clock, **fields})

    def _start(self) -> None:
        with self._cond:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(target=self._run, name="pgqueue-events",
                                            daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Send ``worker-offline`` (when worker events were on), flush, and stop."""
        if self.worker_events and self._heartbeat is not None:
            self.send("worker-offline", **self._heartbeat())
        with self._cond:
            self._stopping = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        next_beat = time.monotonic() + HEARTBEAT
        next_look = time.monotonic() + RECHECK
        while True:
            with self._cond:
                if not self._buffer and not self._stopping:
                    self._cond.wait(max(0.0, min(next_beat, next_look) - time.monotonic()))
                woken = bool(self._buffer) and not self._stopping
            if time.monotonic() >= next_look:
                next_look = time.monotonic() + RECHECK
                self.enabled = self.wanted and listening(self.app)
            if woken:  # let a burst gather: one statement for many events
                time.sleep(LINGER)
            with self._cond:
                batch, self._buffer = self._buffer, []
                stopping = self._stopping
            beat = not stopping and time.monotonic() >= next_beat
            if beat:  # due whether or not it goes out: a beat in the past would spin
                next_beat = time.monotonic() + HEARTBEAT
            if beat and self.worker_events and self.enabled and self._heartbeat is not None:
                batch.append(self._payload("worker-heartbeat", self._heartbeat()))
            if batch:
                self.flush(batch)
            if stopping:
                return

    def flush(self, payloads: list[str]) -> None:
        try:
            self.app.execute("event_notify", {
                "events_channel": self.app.queries.events_channel,
                "payloads": "\n".join(payloads)})
            self.sent += len(payloads)
        except Exception as error:
            logger.warning("could not send %d events: %s", len(payloads), error)


def worker_fields(freq: float = HEARTBEAT) -> dict[str, Any]:
    """What every worker-* event carries besides its counts."""
    return {"freq": freq, "sw_ident": "pgqueue", "sw_ver": __version__,
            "sw_sys": platform.system()}


def send_task_sent(app: App, task: str, shared: dict[str, Any],
                   rows: Sequence[dict[str, Any]]) -> None:
    """``task-sent`` for each job of a batch just inserted (``task_send_sent_event``),
    while someone listens."""
    from pgqueue.utils import hostname

    if not listening(app):
        return
    options = json.loads(shared["options"]) if shared.get("options") else {}
    now, pid, host = time.time(), os.getpid(), f"{os.getpid()}@{hostname()}"
    payloads = [encode({
        "type": "task-sent", "hostname": host, "timestamp": now, "utcoffset": 0,
        "pid": pid, "clock": 0, "uuid": row["id"], "name": task,
        "args": short(row.get("args")), "kwargs": short(row.get("kwargs")),
        "retries": 0, "eta": options.get("eta"), "expires": shared.get("expires_at"),
        "queue": shared.get("queue"), "exchange": "", "routing_key": shared.get("queue"),
        "root_id": shared.get("root_id"), "parent_id": shared.get("parent_id")})
        for row in rows]
    _notify(app, payloads, "task-sent")


def revocations_wanted(app: App) -> bool:
    """Whether a revoke made in this process publishes ``task-revoked``: events are on
    in its configuration (``worker_send_task_events``, or ``task_send_sent_event``)."""
    conf = app.conf
    return bool(conf.worker_send_task_events or conf.task_send_sent_event)


def send_task_revoked(app: App, task_ids: Sequence[str]) -> None:
    """``task-revoked`` for jobs revoked before they started. Celery's worker sends it
    when it meets the revoked message; here no worker ever sees the job, so the process
    that revoked it sends it (a job terminated while running is reported by its
    worker, ``terminated`` true)."""
    from pgqueue.utils import hostname

    if not listening(app):
        return
    now, pid, host = time.time(), os.getpid(), f"{os.getpid()}@{hostname()}"
    _notify(app, [encode({"type": "task-revoked", "hostname": host, "timestamp": now,
                          "utcoffset": 0, "pid": pid, "clock": 0, "uuid": task_id,
                          "terminated": False, "signum": None, "expired": False})
                  for task_id in task_ids], "task-revoked")


def _notify(app: App, payloads: list[str], what: str) -> None:
    """Events from a process that is no worker: one statement, best-effort."""
    try:
        app.execute("event_notify", {"events_channel": app.queries.events_channel,
                                     "payloads": "\n".join(payloads)})
    except Exception as error:
        logger.warning("could not send %s events: %s", what, error)


class Receiver:
    """Celery's ``app.events.Receiver(connection, handlers={...})``, adapted.

    ``connection``: None (a connection of its own to the app's database), a DSN, or an
    autocommit psycopg connection. ``handlers`` maps an event type (``'task-failed'``) or
    ``'*'`` (every other type) to a function taking the event dict. :meth:`capture` runs
    until ``limit`` events were handled or ``timeout`` seconds (in all) have passed.
    """

    def __init__(self, app: App, connection: Any = None,
                 handlers: dict[str, Callable[[dict[str, Any]], Any]] | None = None) -> None:
        if connection is not None and not isinstance(connection, (str, psycopg.Connection)):
            raise TypeError("connection must be None, a DSN or a psycopg connection, not "
                            f"{type(connection).__name__}")
        self.app = app
        self.connection = connection
        self.handlers = dict(handlers or {})

    def itercapture(self, limit: int | None = None, timeout: float | None = None
                    ) -> Iterator[dict[str, Any]]:
        """Yield each event received (with ``local_received``), in the order sent."""
        yield from self.itercapture_as(parse, limit, timeout)

    def itercapture_as(self, read: Callable[[str], T | None], limit: int | None = None,
                       timeout: float | None = None) -> Iterator[T]:
        """:meth:`itercapture` of ``read(payload)`` for each NOTIFY payload received, in
        the order sent; one ``read`` makes None is not an event (not counted, skipped).
        ``pgqueue events --json`` reads payloads this way, to print them as they came."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):
            raise ValueError(f"limit must be a whole number above 0, got {limit!r}")
        own = not isinstance(self.connection, psycopg.Connection)
        conn: psycopg.Connection[Any] = self.connection if isinstance(
            self.connection, psycopg.Connection) else db.connect(
            self.connection or self.app.dsn,
            application_name=db.application_name(self.app.schema, "events"))
        deadline = None if timeout is None else time.monotonic() + timeout
        count = 0
        registration: Registration | None = None
        try:
            conn.execute(queries.listen(self.app.queries.events_channel))
            registration = Registration(self.app, conn)  # publishers start within RECHECK
            while limit is None or count < limit:
                wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if wait <= 0:
                    return
                registration.refresh_due()
                for note in conn.notifies(timeout=wait, stop_after=1):
                    event = read(note.payload)
                    if event is None:
                        continue
                    count += 1
                    yield event
        finally:
            if registration is not None and not conn.closed:
                registration.remove()
            if own:
                conn.close()

    def capture(self, limit: int | None = None, timeout: float | None = None,
                wakeup: bool = True) -> None:
        """Call the handlers for each event until ``limit`` or ``timeout``."""
        for event in self.itercapture(limit, timeout):
            handler = self.handlers.get(event["type"]) or self.handlers.get("*")
            if handler is not None:
                handler(event)


def parse(payload: str) -> dict[str, Any] | None:
    """An event from a NOTIFY payload; None for one that is not an event."""
    try:
        event = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return None
    event["local_received"] = time.time()
    return event


class Events:
    """``app.events``: ``Receiver(connection, handlers)`` and ``Dispatcher(hostname)``."""

    def __init__(self, app: App) -> None:
        self.app = app

    def Receiver(self, connection: Any = None,  # noqa: N802 - Celery's name
                 handlers: dict[str, Callable[[dict[str, Any]], Any]] | None = None
                 ) -> Receiver:
        return Receiver(self.app, connection, handlers)

    def Dispatcher(self, hostname: str | None = None,  # noqa: N802 - Celery's name
                   enabled: bool = True) -> EventDispatcher:
        """Send your own events: ``d.send('custom-type', field=...)``; ``d.stop()``."""
        from pgqueue.utils import hostname as host

        return EventDispatcher(self.app, hostname or f"{os.getpid()}@{host()}", enabled)
