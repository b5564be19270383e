"""Priority aging (optional): queued jobs that waited long enough step up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgqueue.db.connection import Dedicated
from pgqueue.db.queries import Queries
from pgqueue.services.batches import run_batches

if TYPE_CHECKING:
    pass



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
