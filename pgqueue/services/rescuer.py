"""The rescuer: started jobs whose lease ran out are requeued, or failed once
retries are spent."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pgqueue.db.connection import Dedicated
from pgqueue.db.queries import Queries

if TYPE_CHECKING:
    pass

logger = logging.getLogger("pgqueue.maintenance")


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
