"""The stager: due ``scheduled`` and ``retry`` jobs become ``queued``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgqueue.db.connection import Dedicated
from pgqueue.db.queries import Queries
from pgqueue.utils import utcnow

if TYPE_CHECKING:
    pass



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
