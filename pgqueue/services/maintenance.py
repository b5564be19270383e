"""Background services: heartbeat, leader election, stager, rescuer, pruner, aging.

Each service is a small class with ``run_once(db)`` (tests call it directly) that returns
the seconds until it wants to run again. :class:`Maintenance` is the thin loop around
them. Services marked ``leader_only`` run only in the process holding the leader lease;
all of them are idempotent, so two leaders overlapping for a moment do no harm.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from pgqueue.db.connection import Dedicated, is_connection_error
from pgqueue.db.queries import Queries
from pgqueue.utils import utcnow

if TYPE_CHECKING:
    from pgqueue.app import App

logger = logging.getLogger("pgqueue.maintenance")


class Service(Protocol):
    name: str
    leader_only: bool

    def run_once(self, db: Dedicated) -> float: ...


class LeaderElection:
    """Takes or renews the leader lease; ``is_leader`` tells the other services."""

    name = "leader"
    leader_only = False

    def __init__(self, queries: Queries, holder: str, ttl: float) -> None:
        self.queries = queries
        self.holder = holder
        self.ttl = ttl
        self.term: int | None = None
        self._valid_until = 0.0

    @property
    def is_leader(self) -> bool:
        return self.term is not None and time.monotonic() < self._valid_until

    def run_once(self, db: Dedicated) -> float:
        asked = time.monotonic()
        rows = db.execute(self.queries["leader_acquire"], {"holder": self.holder,
                                                           "ttl": self.ttl})
        term = rows[0][0] if rows else None
        if term != self.term:
            if term is None:
                logger.info("%s is no longer the leader", self.holder)
            else:
                logger.info("%s is the leader (term %d)", self.holder, term)
        self.term = term
        # Trust the lease a little less long than the server grants it.
        self._valid_until = asked + self.ttl * 0.8
        return self.ttl / 3

    def release(self, db: Dedicated) -> None:
        if self.term is not None:
            db.execute(self.queries["leader_release"], {"holder": self.holder})
            self.term = None


class Stager:
    """Promotes due ``scheduled`` and ``retry`` jobs to ``queued`` and wakes workers."""

    name = "stager"
    leader_only = True

    def __init__(self, queries: Queries, interval: float, batch: int = 5000) -> None:
        self.queries = queries
        self.interval = interval
        self.batch = batch

    def run_once(self, db: Dedicated) -> float:
        rows = db.execute(self.queries["job_stage"], {"limit": self.batch,
                                                      **self.queries.channels()})
        staged, _, next_due = rows[0]
        if staged >= self.batch:
            return 0.0  # more are due right now
        if next_due is None:
            return self.interval
        return float(max(0.0, min(self.interval, (next_due - utcnow()).total_seconds())))


class Rescuer:
    """Requeues (or fails, once retries are spent) jobs whose worker stopped renewing."""

    name = "rescuer"
    leader_only = True

    def __init__(self, queries: Queries, interval: float, batch: int = 1000) -> None:
        self.queries = queries
        self.interval = interval
        self.batch = batch

    def run_once(self, db: Dedicated) -> float:
        rows = db.execute(self.queries["job_rescue"], {"limit": self.batch,
                                                       **self.queries.channels()})
        requeued, failed, _, _ = rows[0]
        if requeued or failed:
            logger.warning("Rescued jobs of lost workers: %d requeued, %d failed "
                           "(WorkerLostError)", requeued, failed)
        return 0.0 if requeued + failed >= self.batch else self.interval


def run_batches(batch: Callable[[], int], size: int, seconds: float) -> float | None:
    """Run ``batch`` (one statement; returns how many rows it did) until one comes back
    short or ``seconds`` have passed, pausing as long as each batch took, so that a long
    catch-up holds the database at most half the time. Returns None when caught up, else
    the pause to take before the next run (the maintenance thread's other services run
    in between, so a catch-up never delays a heartbeat by more than ``seconds``)."""
    started = time.monotonic()
    while True:
        batch_started = time.monotonic()
        if batch() < size:
            return None
        pause = time.monotonic() - batch_started
        if time.monotonic() + pause - started >= seconds:
            return pause
        time.sleep(pause)


class Pruner:
    """Deletes results older than ``result_expires``, oldest first, and workers long gone.

    A run deletes batches in the order of ``results_finished_at_idx`` (see
    :func:`run_batches`) until caught up or ``run_seconds`` have passed, and asks to run
    again soon when there is more. When a catch-up has lasted longer than
    ``behind_after`` (default: ``interval``), results are finishing faster than they are
    deleted, and it says so in the log, at most once per ``WARN_EVERY`` seconds.
    """

    name = "pruner"
    leader_only = True
    WARN_EVERY = 300.0

    def __init__(self, queries: Queries, result_expires: float | None, worker_ttl: float,
                 interval: float = 60.0, batch: int = 5000, run_seconds: float = 1.0,
                 behind_after: float | None = None) -> None:
        self.queries = queries
        self.result_expires = result_expires
        self.worker_ttl = worker_ttl
        self.interval = interval
        self.batch = batch
        self.run_seconds = run_seconds
        self.behind_after = interval if behind_after is None else behind_after
        self.deleted = 0  # by the current catch-up
        self._catch_up_since: float | None = None
        self._after: datetime | None = None  # the newest finish time deleted so far
        self._ran_at = -math.inf
        self._warned_at = -math.inf

    def run_once(self, db: Dedicated) -> float:
        db.execute(self.queries["worker_prune"], {"older_than": self.worker_ttl})
        if not self.result_expires:
            return self.interval
        started = time.monotonic()
        # A catch-up goes on from the run before only if that run asked to go on and was
        # not cut off since (a lost leader lease, an outage).
        if self._catch_up_since is None or started - self._ran_at > self.interval:
            self._catch_up_since, self.deleted, self._after = started, 0, None
        pause = run_batches(lambda: self._prune(db), self.batch, self.run_seconds)
        self._ran_at = time.monotonic()
        if pause is None:
            self._catch_up_since = None
            return self.interval
        self._check_behind(db)
        return pause

    def _prune(self, db: Dedicated) -> int:
        count, newest = db.execute(self.queries["result_prune"], {
            "older_than": self.result_expires, "limit": self.batch, "after": self._after})[0]
        self.deleted += count
        self._after = newest or self._after
        return int(count)

    def _check_behind(self, db: Dedicated) -> None:
        assert self._catch_up_since is not None
        now = time.monotonic()
        busy = now - self._catch_up_since
        if busy < self.behind_after or now - self._warned_at < self.WARN_EVERY:
            return
        self._warned_at = now
        oldest = db.execute(self.queries["result_oldest"])[0][0]
        age = (utcnow() - oldest).total_seconds() if oldest else 0.0
        logger.warning(
            "Result pruner is falling behind: expired results are still left after %.0fs "
            "of deleting (%d rows, %.0f rows/s); the oldest finished %.0fs ago "
            "(result_expires is %.0fs). The database is overloaded or something blocks "
            "the deletes; see Retention in docs/tuning.md",
            busy, self.deleted, self.deleted / max(busy, 1e-9), age, self.result_expires)


class PriorityAging:
    """Raises the priority of queued jobs that wait: after n times ``aging`` seconds a job
    runs at priority n or more (up to 9), so that a low priority cannot starve under a
    constant stream of higher ones. Off unless the ``priority_aging`` setting is set
    (see :func:`optional_services`); ``options.original_priority`` keeps the job's own."""

    name = "priority_aging"
    leader_only = True

    def __init__(self, queries: Queries, aging: float, interval: float = 1.0,
                 batch: int = 1000, run_seconds: float = 1.0) -> None:
        self.queries = queries
        self.aging = aging
        self.interval = interval
        self.batch = batch
        self.run_seconds = run_seconds
        self.aged = 0

    def run_once(self, db: Dedicated) -> float:
        pause = run_batches(lambda: self._age(db), self.batch, self.run_seconds)
        return self.interval if pause is None else pause

    def _age(self, db: Dedicated) -> int:
        count = int(db.execute(self.queries["job_age"], {"aging": self.aging,
                                                         "limit": self.batch})[0][0])
        self.aged += count
        return count


def optional_services(app: App) -> list[Any]:
    """The leader's services that settings turn on: priority aging. A job's priority
    steps up at most ``priority_aging`` seconds late (a tenth of it, at least
    ``maintenance_interval``, at most a minute)."""
    aging = app.conf.seconds("priority_aging")
    if not aging:
        return []
    interval = min(60.0, max(float(app.conf.maintenance_interval), aging / 10))
    return [PriorityAging(app.queries, aging, interval)]


class Maintenance(threading.Thread):
    """Runs each service when it is due, on one dedicated connection."""

    def __init__(self, app: App, holder: str, services: list[Any],
                 name: str = "pgqueue-maintenance") -> None:
        super().__init__(name=name, daemon=True)
        conf = app.conf
        self.election = LeaderElection(app.queries, holder, float(conf.leader_ttl_seconds))
        self.services: list[Any] = [self.election, *services]
        self.db = Dedicated(app.dsn, app.schema, "maintenance", durable=False)
        self._due = {id(s): 0.0 for s in self.services}
        self._stopping = threading.Event()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self.join(timeout)

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception as error:
                if not is_connection_error(error):
                    logger.exception("maintenance: unexpected error")
                self._stopping.wait(self.db.failed(error))
                continue
            next_due = min(self._due.values())
            self._stopping.wait(max(0.0, min(1.0, next_due - time.monotonic())))
        with contextlib.suppress(Exception):
            self.election.release(self.db)
        self.db.close()

    def tick(self) -> None:
        """Run every service that is due now (tests call this directly)."""
        for service in self.services:
            now = time.monotonic()
            if self._due[id(service)] > now:
                continue
            if service.leader_only and not self.election.is_leader:
                self._due[id(service)] = now + 1.0
                continue
            delay = service.run_once(self.db)
            self._due[id(service)] = time.monotonic() + delay
