"""``app.control``: act on jobs by id (revoke) and on queues (purge); remote control of
workers (Celery's ``app.control.*`` and ``app.control.inspect()``); and the worker's side
of control requests.

A request to a worker is a row of ``<schema>.control_requests``, which only roles granted
``<schema>_control`` may write. The NOTIFY on ``<schema>.control`` that follows only wakes
the workers: anyone who can connect may send one, so its payload is never read as an
instruction. A worker acts on the rows it reads (:class:`ControlInbox`). Each command is
an ``action``, with its keyword arguments in ``arguments`` and the workers addressed in
``destination`` (worker ids or node names; NULL: every worker). When the caller asks for
replies (``"reply": true`` in the arguments), each addressed worker writes one row to
``<schema>.control_replies`` and NOTIFYs ``<schema>.replies``; the caller, LISTENing
there since before it wrote the request, reads the rows after each wake-up until every
worker it expects has answered or the timeout passes (:meth:`Control.broadcast`).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgqueue import flow, limits

if TYPE_CHECKING:
    from pgqueue.app import App
    from pgqueue.inspection import Inspect

#: Requests (and their replies) older than this are deleted when new ones are written
#: (seconds). A worker cut off from the database for longer has had its jobs rescued by then.
RETENTION = 3600.0
#: Celery's default wait for replies (seconds).
DEFAULT_TIMEOUT = 1.0
#: The error line of a purged job that a workflow step waited for.
PURGED = "purged: removed from its queue by purge before it ran"
#: The commands workers answer (pgqueue.worker.remote), besides abort and terminate.
COMMANDS = ("ping", "stats", "registered", "conf", "report", "active_queues", "reserved",
            "shutdown",
            "pool_restart", "pool_grow", "pool_shrink", "autoscale", "time_limit",
            "add_consumer", "cancel_consumer", "enable_events", "disable_events")

Replies = list[dict[str, Any]]


def node_of(worker_id: str) -> str:
    """The node name (``-n``) of a worker id ``node:pid:suffix``."""
    parts = worker_id.rsplit(":", 2)
    return parts[0] if len(parts) == 3 else worker_id


def destinations(destination: str | Sequence[str] | None) -> list[str] | None:
    """Celery's ``destination``: a node name, a list of them, or None (every worker)."""
    if destination is None:
        return None
    names = [destination] if isinstance(destination, str) else list(destination)
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(f"destination must name workers (node names such as "
                         f"'worker1@host', or worker ids), got {destination!r}")
    return [n.strip() for n in names]


def _count(what: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be a whole number of at least {minimum}, got {value!r}")
    return value


def _limit(what: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a number of seconds above 0 (or None: no limit), "
                         f"got {value!r}")
    return float(value)


class Control:
    """Celery's ``app.control``: revoke and purge act on the tables; the remote-control
    commands (``ping``, ``pool_grow``, ``add_consumer``...) are answered by the workers.

    Each command takes Celery's keywords: ``destination`` (node names; default every
    worker), ``reply`` (wait for the answers: the command returns a list of
    ``{node: answer}``; without it, None), ``timeout`` (seconds to wait, default 1),
    ``limit`` (stop after that many answers) and ``callback`` (called with each answer
    as it comes). ``connection`` and ``channel`` are refused: the app's database is used.
    """

    def __init__(self, app: App) -> None:
        self.app = app

    def revoke(self, task_id: str | Sequence[str], terminate: bool = False,
               signal: str | None = None, **kwargs: Any) -> list[str]:
        """End jobs that have not started as REVOKED; they will never run.

        With ``terminate=True`` a running job is stopped too: its child process is killed
        (``-P processes``), its coroutine cancelled (``-P asyncio``), or, in a thread, it
        is recorded REVOKED at once and interrupted at its next bytecode. Without it, a
        running job runs to its end, as in Celery. Returns the ids revoked before start,
        as given. Any string is a task id; one no job has is nothing to revoke.
        ``signal`` may only name Celery's default (TERM): the pool, not a signal, decides
        how a job stops. Celery's other keywords (``destination``, ``reply``) are refused.
        """
        if signal is not None and signal.upper().removeprefix("SIG") != "TERM":
            raise ValueError(f"revoke(signal={signal!r}) is not supported: terminate=True "
                             "stops a job the pool's way (prefork kills its child, threads "
                             "interrupt it, asyncio cancels it); leave signal out")
        if kwargs:
            raise TypeError(f"revoke() got unsupported keyword(s) {', '.join(sorted(kwargs))}: "
                            "every worker acts on a revoke; there are no replies to wait for")
        given = [task_id] if isinstance(task_id, str) else list(task_id)
        # Any string is a task id: each names its rows by uuid (limits.row_id). A string
        # that cannot be a task id has no job to revoke.
        by_row = {row: str(i) for i in given if (row := limits.row_id(str(i))) is not None}
        channels = self.app.queries.channels()
        rows = self.app.execute("job_revoke", {"ids": list(by_row), "reason":
                                               "revoked by request", "flag_started": True,
                                               **channels})
        revoked = {str(r[0]) for r in rows}
        running = [row for row in by_row if row not in revoked]
        if terminate and running:
            self.request("terminate", running)
        done = [i for row, i in by_row.items() if row in revoked]
        if done:
            from pgqueue import events

            if events.revocations_wanted(self.app):
                events.send_task_revoked(self.app, done)
        return done

    def request(self, action: str, job_ids: Sequence[str] = (),
                destination: Sequence[str] | None = None,
                arguments: dict[str, Any] | None = None) -> int:
        """Write a control request and wake the workers; returns its id."""
        rows = self.app.execute("control_request_insert", {
            "action": action, "job_ids": list(job_ids),
            "destination": list(destination) if destination is not None else None,
            "arguments": json.dumps(arguments or {}), "retention": RETENTION,
            **self.app.queries.channels()})
        return int(rows[0][0])

    # -- flow control (pgqueue.flow, docs/flow-control.md) ------------------------------
    def rate_limit(self, task_name: str, rate_limit: Any, destination: Any = None,
                   **kwargs: Any) -> None:
        """Celery's ``rate_limit(task, "10/m")``, for the whole fleet and persisted: at
        most that many starts of the task per window on all workers together, seen by
        every worker within a second. None removes the limit (0, Celery's way, is
        refused as a likely mistake)."""
        if destination is not None or kwargs:
            raise TypeError("rate_limit(): a limit holds for every worker; destination, "
                            "reply and timeout are not supported")
        flow.rate_limit(self.app, task_name, rate_limit)

    def pause_queue(self, queue: str, create: bool = False) -> None:
        """Start no new job of ``queue`` on any worker; running jobs finish."""
        flow.pause(self.app, queue, create=create)

    def resume_queue(self, queue: str) -> None:
        flow.resume(self.app, queue)

    def queue_limit(self, queue: str, concurrency: int | None | bool = False,
                    rate_limit: Any = False, create: bool = False) -> None:
        """At most ``concurrency`` jobs of ``queue`` at once and ``rate_limit`` starts
        (``"200/s"``), fleet-wide; None removes a limit, one not given stays."""
        flow.limit_queue(self.app, queue, concurrency, rate_limit, create=create)

    def queues(self) -> list[flow.QueueState]:
        """Every queue: paused or not, queued and running jobs, limits."""
        return flow.queues(self.app)

    def purge(self, queues: Sequence[str] | None = None) -> int:
        """Delete every job waiting in ``queues`` (all queues when None); returns the count.

        A purged job that a workflow step waits for ends REVOKED ("purged"), so that step
        and the ones after it end too (docs/canvas.md) instead of waiting for ever."""
        rows = self.app.execute("job_purge", {"queues": list(queues) if queues else None,
                                              "reason": PURGED,
                                              **self.app.queries.channels()})
        return int(rows[0][0])

    # -- remote control -------------------------------------------------------------------
    def broadcast(self, command: str, arguments: dict[str, Any] | None = None,
                  destination: str | Sequence[str] | None = None, connection: Any = None,
                  reply: bool = False, timeout: float = DEFAULT_TIMEOUT,
                  limit: int | None = None,
                  callback: Callable[[dict[str, Any]], Any] | None = None,
                  channel: Any = None, **extra: Any) -> Replies | None:
        """Send ``command`` to the workers (all, or ``destination``); with ``reply``, wait
        up to ``timeout`` seconds and return ``[{node: answer}, ...]``. The wait ends
        early once every addressed live worker has answered (or ``limit`` answers came)."""
        if command not in COMMANDS:
            from pgqueue.limits import did_you_mean

            raise ValueError(f"unknown control command {command!r}"
                             f"{did_you_mean(command, COMMANDS)}; known: {', '.join(COMMANDS)}")
        if connection is not None or channel is not None:
            raise TypeError("connection= and channel= are not supported: control requests "
                            "go through the app's database")
        if extra:
            raise TypeError(f"{command}() got unsupported keyword(s) "
                            f"{', '.join(sorted(extra))}")
        names = destinations(destination)
        timeout = _limit("timeout", timeout) or DEFAULT_TIMEOUT
        if limit is not None:
            _count("limit", limit)
        arguments = dict(arguments or {})
        if not reply:
            self.request(command, destination=names, arguments=arguments)
            return None
        from pgqueue.replies import collect

        return collect(self.app, lambda: self.request(
            command, destination=names, arguments={**arguments, "reply": True}),
            names, timeout, limit, callback)

    def _command(self, command: str, arguments: dict[str, Any],
                 destination: str | Sequence[str] | None, kwargs: dict[str, Any]
                 ) -> Replies | None:
        return self.broadcast(command, arguments, destination, **kwargs)

    def ping(self, destination: str | Sequence[str] | None = None,
             timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> Replies | None:
        """``[{node: {'ok': 'pong'}}]`` from every live worker (or ``destination``)."""
        kwargs.setdefault("reply", True)
        return self.broadcast("ping", {}, destination, timeout=timeout, **kwargs)

    def shutdown(self, destination: str | Sequence[str] | None = None,
                 **kwargs: Any) -> Replies | None:
        """Warm shutdown: the workers stop claiming, finish their running jobs (up to
        ``worker_shutdown_timeout``) and exit, as on SIGTERM."""
        return self._command("shutdown", {}, destination, kwargs)

    def pool_restart(self, modules: Sequence[str] | None = None, reload: bool = False,
                     reloader: Any = None, destination: str | Sequence[str] | None = None,
                     **kwargs: Any) -> Replies | None:
        """Replace the children of ``-P processes`` workers (each after its running job),
        importing ``modules`` first (with ``reload=True``: reloading those already
        imported). Needs ``worker_pool_restarts = True``, as in Celery."""
        if reloader is not None:
            raise TypeError("pool_restart(reloader=...) is not supported: modules are "
                            "reloaded with importlib.reload")
        names = [] if modules is None else [modules] if isinstance(modules, str) \
            else list(modules)
        if not all(isinstance(m, str) and m for m in names):
            raise ValueError(f"modules must be module names, got {modules!r}")
        return self._command("pool_restart", {"modules": names, "reload": bool(reload)},
                             destination, kwargs)

    def pool_grow(self, n: int = 1, destination: str | Sequence[str] | None = None,
                  **kwargs: Any) -> Replies | None:
        """Add ``n`` slots (threads or child processes) to each worker's pool."""
        return self._command("pool_grow", {"n": _count("n", n)}, destination, kwargs)

    def pool_shrink(self, n: int = 1, destination: str | Sequence[str] | None = None,
                    **kwargs: Any) -> Replies | None:
        """Remove ``n`` slots from each worker's pool (never below one); busy slots go
        when their jobs end."""
        return self._command("pool_shrink", {"n": _count("n", n)}, destination, kwargs)

    def autoscale(self, max: int, min: int,  # noqa: A002 - Celery's names
                  destination: str | Sequence[str] | None = None,
                  **kwargs: Any) -> Replies | None:
        """Change the bounds of workers started with ``--autoscale``."""
        high, low = _count("max", max), _count("min", min)
        if low > high:
            raise ValueError(f"autoscale: min ({low}) must not be above max ({high})")
        return self._command("autoscale", {"max": high, "min": low}, destination, kwargs)

    def time_limit(self, task_name: str, soft: float | None = None,
                   hard: float | None = None,
                   destination: str | Sequence[str] | None = None,
                   **kwargs: Any) -> Replies | None:
        """Set a task's soft and hard time limits in the workers (None: no limit); jobs
        started from then on use them."""
        if not isinstance(task_name, str) or not task_name:
            raise ValueError(f"time_limit needs a task name, got {task_name!r}")
        return self._command("time_limit", {"task_name": task_name,
                                            "soft": _limit("soft", soft),
                                            "hard": _limit("hard", hard)},
                             destination, kwargs)

    def add_consumer(self, queue: str, exchange: str | None = None,
                     exchange_type: str = "direct", routing_key: str | None = None,
                     options: dict[str, Any] | None = None,
                     destination: str | Sequence[str] | None = None,
                     **kwargs: Any) -> Replies | None:
        """Make the workers claim from ``queue`` too."""
        if exchange is not None or routing_key not in (None, queue) or options \
                or exchange_type != "direct":
            raise ValueError("add_consumer: exchange, exchange_type, routing_key and options "
                             "are not supported: a queue is a name in the jobs table")
        from pgqueue import limits

        return self._command("add_consumer", {"queue": limits.name("queue", queue)},
                             destination, kwargs)

    def cancel_consumer(self, queue: str, destination: str | Sequence[str] | None = None,
                        **kwargs: Any) -> Replies | None:
        """Make the workers stop claiming from ``queue`` (a worker keeps at least one)."""
        from pgqueue import limits

        return self._command("cancel_consumer", {"queue": limits.name("queue", queue)},
                             destination, kwargs)

    def enable_events(self, destination: str | Sequence[str] | None = None,
                      **kwargs: Any) -> Replies | None:
        """Make the workers send task events (as ``pgqueue worker -E``)."""
        return self._command("enable_events", {}, destination, kwargs)

    def disable_events(self, destination: str | Sequence[str] | None = None,
                       **kwargs: Any) -> Replies | None:
        """Stop the workers' task events (worker events go on while -E was given)."""
        return self._command("disable_events", {}, destination, kwargs)

    def inspect(self, destination: str | Sequence[str] | None = None,
                timeout: float = DEFAULT_TIMEOUT, callback: Any = None,
                connection: Any = None, limit: int | None = None, **kwargs: Any) -> Inspect:
        """Celery's ``app.control.inspect(...)``: ``.active()``, ``.stats()``... each
        return ``{node: answer}`` or None when no worker answered."""
        from pgqueue.inspection import Inspect

        if connection is not None or kwargs:
            raise TypeError("inspect() takes destination, timeout, callback and limit; "
                            f"got {', '.join(sorted(kwargs) or ['connection'])}")
        return Inspect(self, destinations(destination), timeout, callback, limit)


@dataclass(frozen=True)
class ControlRequest:
    id: int
    action: str
    job_ids: list[str]
    arguments: dict[str, Any]
    #: The arguments as written, when they were not a JSON object (plain SQL).
    malformed: Any = None


class ControlInbox:
    """The control requests a worker has not read yet, each returned once.

    Reads are tracked by transaction, not by id: ids are handed out when a request is
    written, so one may commit after a higher one was read. Each read returns the
    horizon of its snapshot (every transaction before it has ended); the next read asks
    for the requests of transactions from that horizon on, minus the ones already seen
    there. The first read only sets the horizon: requests written before the worker
    started are not its own. Reading after every (re)connect picks up what was written
    while the listener was away.
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)  # what a request's destination may call this worker
        self._lock = threading.Lock()
        self._horizon: str | None = None
        self._seen: dict[int, int] = {}  # request id -> its transaction, at or past horizon

    def read(self, app: App) -> list[ControlRequest]:
        with self._lock:  # the listener thread reads; a test may too
            rows = app.execute("control_request_read", {
                "after": self._horizon, "seen": list(self._seen), "names": self.names})
            first = self._horizon is None
            horizon = rows[0][0]
            requests = []
            for _, request_id, action, job_ids, arguments, xid in rows:
                if request_id is None:
                    continue
                self._seen[request_id] = int(xid)
                requests.append(ControlRequest(
                    request_id, action, job_ids or [],
                    arguments if isinstance(arguments, dict) else {},
                    None if isinstance(arguments, dict) else arguments))
            self._horizon = horizon
            self._seen = {i: x for i, x in self._seen.items() if x >= int(horizon)}
        return [] if first else requests
