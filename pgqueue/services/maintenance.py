"""The loop that runs the background services, and the list of what the leader runs.

Each service (one module each in this package: leader, stager, rescuer, pruner, aging,
scheduler, sweeper; the heartbeat is the worker's) is a small class with ``run_once(db)``
(tests call it directly) that returns the seconds until it wants to run again.
:class:`Maintenance` is the thin loop around them. Services marked ``leader_only`` run
only in the process holding the leader lease; all of them are idempotent, so two leaders
overlapping for a moment do no harm.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from pgqueue.db.connection import Dedicated, is_connection_error
from pgqueue.services.aging import PriorityAging
from pgqueue.services.leader import LeaderElection
from pgqueue.services.partitions import Partitioner
from pgqueue.services.pruner import Pruner
from pgqueue.services.rescuer import Rescuer
from pgqueue.services.stager import Stager
from pgqueue.services.sweeper import StepSweeper

if TYPE_CHECKING:
    from pgqueue.app import App

logger = logging.getLogger("pgqueue.maintenance")


class Service(Protocol):
    name: str
    leader_only: bool

    def run_once(self, db: Dedicated) -> float: ...


def leader_services(app: App) -> list[Any]:
    """What the leader runs, in every process that may become leader (a worker or
    ``pgqueue beat``). Every worker's row is seen at least once per
    ``worker_lease_seconds`` (its heartbeat), so a row silent for four of them is gone."""
    conf = app.conf
    return [
        Stager(app.queries, float(conf.stage_interval)),
        Rescuer(app.queries, float(conf.maintenance_interval)),
        Partitioner(app.queries, conf.seconds("result_expires"),
                    failed_retention(app), conf.result_archive_schema),
        Pruner(app.queries, conf.seconds("result_expires"),
               worker_ttl=float(conf.worker_lease_seconds) * 4,
               result_expires_failed=conf.seconds("result_expires_failed"),
               archive_schema=conf.result_archive_schema),
        StepSweeper(app.queries),  # workflow steps whose predecessor is lost
        *optional_services(app),
    ]


def failed_retention(app: App) -> float | None:
    """How long FAILURE and REVOKED results stay: ``result_expires_failed``, or (None)
    as long as successes; None or 0 in the result: for ever."""
    failed = app.conf.seconds("result_expires_failed")
    return app.conf.seconds("result_expires") if failed is None else failed


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
