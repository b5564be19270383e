"""``app.control``: act on jobs by id (revoke) and on queues (purge); and the worker's
side of control requests.

A request to a worker (terminate or abort a running job) is a row of
``<schema>.control_requests``, which only roles granted ``<schema>_control`` may write.
The NOTIFY on ``<schema>.control`` that follows only wakes the workers: anyone who can
connect may send one, so its payload is never read as an instruction. A worker acts on
the rows it reads (:class:`ControlInbox`). New actions (the remote-control commands to
come) are new values of ``action``, with their parameters in ``arguments`` and the
workers addressed in ``destination``; replies would go to a table keyed by the request id.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgqueue import limits

if TYPE_CHECKING:
    from pgqueue.app import App

#: Requests older than this are deleted when new ones are written (seconds). A worker cut
#: off from the database for longer has had its jobs rescued by then.
RETENTION = 3600.0


class Control:
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
                                               "revoked by request", **channels})
        revoked = {str(r[0]) for r in rows}
        running = [row for row in by_row if row not in revoked]
        if terminate and running:
            self.request("terminate", running)
        return [i for row, i in by_row.items() if row in revoked]

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

    def purge(self, queues: Sequence[str] | None = None) -> int:
        """Delete every job waiting in ``queues`` (all queues when None); returns the count."""
        rows = self.app.execute("job_purge", {"queues": list(queues) if queues else None})
        return int(rows[0][0])


@dataclass(frozen=True)
class ControlRequest:
    id: int
    action: str
    job_ids: list[str]
    arguments: dict[str, Any]


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
                requests.append(ControlRequest(request_id, action, job_ids or [],
                                               arguments if isinstance(arguments, dict)
                                               else {}))
            self._horizon = horizon
            self._seen = {i: x for i, x in self._seen.items() if x >= int(horizon)}
        return [] if first else requests
