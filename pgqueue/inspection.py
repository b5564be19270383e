"""``app.control.inspect()``: Celery's inspect commands, each answering
``{node: answer}`` for the live workers addressed (None when there are none).

Where the answer is in the tables, it is read there, in one statement, without asking
the workers: ``active`` (the jobs each worker holds), ``scheduled`` (jobs waiting for
their eta or retry delay in each worker's queues) and ``revoked`` (the ids revoked
lately, the same for every worker: a revoke is a row, not a worker's memory). What only
a worker knows is asked of it by a control request: ``reserved``, ``registered``,
``stats``, ``active_queues``, ``conf``, ``report``, ``ping``. ``query_task`` does both:
the table says which worker holds each job, and only the workers that hold some are
asked which of theirs have not started.

``reserved`` is Celery's "received, not started": the jobs a worker has claimed and its
pool has not begun. A worker claims only as many jobs as it has free slots, so such a
job waits only for the claim loop to get to it (after the ``task_received`` handlers of
the jobs claimed before it in the same batch) or, in the processes pool, for its child
to begin it (a child being replaced, or still in ``worker_process_init``); the list is
empty most of the time. The table cannot tell these jobs from running ones (a claim is
the start as far as the row knows, and one more write per job to tell them apart would
cost every job): ``active`` and ``query_task`` read the held jobs from the table, then
ask only the workers that hold some which of theirs have not started, and
``active`` leaves those out while ``query_task`` says ``reserved`` for them, as Celery
does. When no answer comes (a worker that does not reply within the timeout, or a
caller with the reader role alone, who may not ask), the table's answer stands: such
jobs are then listed as active.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pgqueue.replies import live_workers

if TYPE_CHECKING:
    from pgqueue.control import Control

#: At most this many jobs per node in ``scheduled`` and ids in ``revoked``.
LIST_LIMIT = 1000

_short = reprlib.Repr()
_short.maxstring = 1024
_short.maxother = 1024


def flatten(replies: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """``[{node: answer}, ...]`` as one ``{node: answer}``; None when empty (Celery)."""
    if not replies:
        return None
    nodes: dict[str, Any] = {}
    for reply in replies:
        nodes.update(reply)
    return nodes


def request_info(row: Sequence[Any], node: str, safe: bool | None) -> dict[str, Any]:
    """A held job as Celery's ``Request.info()`` describes it."""
    job_id, task, _, args, kwargs, attempt, priority, queue, started, options, pid = row
    return {
        "id": job_id, "name": task, "type": task,
        "args": _short.repr(args) if safe else args,
        "kwargs": _short.repr(kwargs) if safe else kwargs,
        "hostname": node, "time_start": started, "acknowledged": True,
        "delivery_info": {"exchange": "", "routing_key": queue, "priority": priority,
                          "redelivered": attempt > 1},
        "worker_pid": pid, "attempt": attempt,
        "time_limit": [options.get("time_limit"), options.get("soft_time_limit")]
        if isinstance(options, dict) else [None, None],
    }


def reserved_info(row: Sequence[Any], node: str, safe: bool | None) -> dict[str, Any]:
    """A job claimed and not started yet, as Celery's ``Request.info()`` describes a
    reserved request: no start time, no process yet, not acknowledged."""
    info = request_info(row, node, safe)
    info.update(time_start=None, acknowledged=False, worker_pid=None)
    return info


class Inspect:
    """What ``app.control.inspect(destination=..., timeout=...)`` returns."""

    def __init__(self, control: Control, destination: list[str] | None = None,
                 timeout: float = 1.0, callback: Callable[[dict[str, Any]], Any] | None = None,
                 limit: int | None = None) -> None:
        self.control = control
        self.app = control.app
        self.destination = destination
        self.timeout = timeout
        self.callback = callback
        self.limit = limit

    # -- answered by the workers ------------------------------------------------------------
    def _ask(self, command: str, **arguments: Any) -> dict[str, Any] | None:
        return flatten(self.control.broadcast(
            command, arguments, self.destination, reply=True, timeout=self.timeout,
            limit=self.limit, callback=self.callback))

    def ping(self, destination: str | Sequence[str] | None = None) -> dict[str, Any] | None:
        """``{node: {'ok': 'pong'}}``."""
        if destination is not None:
            from pgqueue.control import destinations

            self.destination = destinations(destination)
        return self._ask("ping")

    def stats(self) -> dict[str, Any] | None:
        """Each worker's pool, counts of jobs by task, uptime, resource usage."""
        return self._ask("stats")

    def registered(self, *taskinfoitems: str) -> dict[str, Any] | None:
        """The tasks each worker knows; with ``taskinfoitems`` (e.g. ``'time_limit'``),
        each name followed by those attributes, as Celery prints them."""
        return self._ask("registered", taskinfoitems=list(taskinfoitems))

    registered_tasks = registered

    def active_queues(self) -> dict[str, Any] | None:
        """The queues each worker claims from now."""
        return self._ask("active_queues")

    def conf(self, with_defaults: bool = False) -> dict[str, Any] | None:
        """Each worker's settings (those changed from the defaults unless
        ``with_defaults``); secrets and passwords are masked."""
        return self._ask("conf", with_defaults=bool(with_defaults))

    def report(self) -> dict[str, Any] | None:
        """``{node: {'ok': text}}``: versions and settings, for a bug report."""
        return self._ask("report")

    def reserved(self, safe: bool | None = None) -> dict[str, Any] | None:
        """The jobs each worker has claimed and not started yet (``safe=True``: arguments
        as short reprs); usually empty lists (see the module's doc)."""
        return self._ask("reserved", safe=safe)

    # -- read from the tables ---------------------------------------------------------------
    def _nodes(self) -> list[tuple[str, str, Any]]:
        found = live_workers(self.app, self.destination)
        return found[:self.limit] if self.limit is not None else found

    def _held(self, ids: list[str] | None, safe: bool | None) -> dict[str, Any] | None:
        nodes = self._nodes()
        if not nodes:
            return None
        answer: dict[str, Any] = {node: [] for _, node, _ in nodes}
        by_worker = {worker_id: node for worker_id, node, _ in nodes}
        for row in self.app.execute("job_list_held", {"ids": ids}):
            node = by_worker.get(row[2])
            if node is not None:
                answer[node].append(request_info(row, node, safe))
        return answer

    def active(self, safe: bool | None = None) -> dict[str, Any] | None:
        """The jobs each worker runs now (``safe=True``: arguments as short reprs), not
        those it has claimed and not started yet (:meth:`reserved`): the workers that hold
        jobs are asked which (see the module's doc)."""
        held = self._held(None, safe)
        if held is None:
            return None
        waiting = self._not_started([node for node, jobs in held.items() if jobs])
        return {node: [job for job in jobs if job["id"] not in waiting.get(node, {})]
                for node, jobs in held.items()}

    def scheduled(self, safe: bool | None = None) -> dict[str, Any] | None:
        """Jobs waiting for their eta (or retry delay) in each worker's queues, soonest
        first, at most :data:`LIST_LIMIT` per worker."""
        nodes = self._nodes()
        if not nodes:
            return None
        answer = {}
        for _, node, row in nodes:
            queues = list(row[3])
            jobs = self.app.execute("job_list_scheduled",
                                    {"queues": queues, "limit": LIST_LIMIT})
            answer[node] = [{
                "eta": run_at.isoformat(), "priority": priority,
                "request": {"id": job_id, "name": task, "type": task,
                            "args": _short.repr(args) if safe else args,
                            "kwargs": _short.repr(kwargs) if safe else kwargs,
                            "hostname": node, "time_start": None, "acknowledged": False,
                            "delivery_info": {"exchange": "", "routing_key": queue,
                                              "priority": priority,
                                              "redelivered": attempt > 0},
                            "worker_pid": None, "state": state}}
                for job_id, task, args, kwargs, attempt, priority, queue, run_at, state
                in jobs]
        return answer

    def revoked(self) -> dict[str, Any] | None:
        """The ids revoked lately (at most :data:`LIST_LIMIT`, newest first), for every
        worker alike: a revoke is recorded in the table, where every worker reads it."""
        nodes = self._nodes()
        if not nodes:
            return None
        ids = [r[0] for r in self.app.execute("result_list_revoked", {"limit": LIST_LIMIT})]
        return {node: list(ids) for _, node, _ in nodes}

    def query_task(self, *ids: str | Sequence[str]) -> dict[str, Any] | None:
        """``{node: {id: [state, request]}}`` for the jobs of ``ids`` each worker holds:
        ``'active'`` when it runs, ``'reserved'`` when it is claimed and not started yet
        (as Celery says). The table lists them; only a worker that holds some is asked
        which have not started. Held jobs stay ``'active'`` when no answer comes within
        the timeout, or when the caller may not ask workers (the reader role alone)."""
        from pgqueue import limits

        flat: list[str] = []
        for each in ids:
            flat.extend([each] if isinstance(each, str) else list(each))
        checked = [limits.job_id("query_task id", i) for i in flat]
        held = self._held([limits.row_id(i) or i for i in checked], None)
        if held is None:
            return None
        waiting = self._not_started([node for node, jobs in held.items() if jobs])
        return {node: {job["id"]: ["reserved", waiting[node][job["id"]]]
                       if job["id"] in waiting.get(node, {}) else ["active", job]
                       for job in jobs}
                for node, jobs in held.items()}

    def _not_started(self, nodes: list[str]) -> dict[str, dict[str, Any]]:
        """``{node: {id: request}}``: the jobs of ``nodes`` claimed and not started."""
        from pgqueue.exceptions import PermissionDenied

        if not nodes:
            return {}
        try:
            answers = flatten(self.control.broadcast("reserved", {}, nodes, reply=True,
                                                     timeout=self.timeout)) or {}
        except PermissionDenied:  # a reader may not ask: the table's answer stands
            return {}
        return {node: {job["id"]: job for job in jobs if isinstance(job, dict)}
                for node, jobs in answers.items() if isinstance(jobs, list)}
