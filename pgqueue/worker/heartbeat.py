"""The worker's heartbeat: keeps the leases of the jobs it holds, and its own row, alive."""

from __future__ import annotations

from pgqueue import signals
from pgqueue.db.connection import Dedicated
from pgqueue.db.queries import Queries
from pgqueue.worker.holdings import Holdings


class Heartbeat:
    """Extends the lease of every job this worker holds, in one statement, and marks the
    worker's row seen.

    It beats three times per ``lease``, and at least three times per ``liveness``: the
    configured ``worker_lease_seconds``, within which ``pgqueue inspect workers`` expects to
    have seen a live worker, even when this worker's own lease is longer (a time limit
    lengthens it).
    """

    name = "heartbeat"
    leader_only = False

    def __init__(self, queries: Queries, worker_id: str, holdings: Holdings,
                 lease: float, liveness: float | None = None) -> None:
        self.queries = queries
        self.worker_id = worker_id
        self.holdings = holdings
        self.lease = lease
        self.interval = min(lease, liveness or lease) / 3

    def run_once(self, db: Dedicated) -> float:
        ids, attempts, _ = self.holdings.snapshot()
        if ids:
            db.execute(self.queries["job_heartbeat"], {
                "ids": ids, "attempts": attempts, "worker": self.worker_id,
                "lease": self.lease})
        db.execute(self.queries["worker_heartbeat"], {"id": self.worker_id})
        signals.heartbeat_sent.send_contained(sender=self)
        return self.interval
