"""Writes outcomes of finished attempts in batches: one statement per kind per flush.

The thread flushes as soon as it has anything; outcomes that arrive while a flush is in
flight form the next batch. That keeps latency low when idle and round trips few when busy.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from pgqueue import states
from pgqueue.db.connection import Dedicated, is_connection_error
from pgqueue.db.queries import Queries
from pgqueue.utils import json_dumps
from pgqueue.worker.execution import Outcome
from pgqueue.worker.holdings import Holdings

logger = logging.getLogger("pgqueue.worker")


class Finisher(threading.Thread):
    def __init__(self, dsn: str, queries: Queries, worker_id: str, holdings: Holdings,
                 batch_size: int = 100) -> None:
        super().__init__(name="pgqueue-finisher", daemon=True)
        self.queries = queries
        self.worker_id = worker_id
        self.holdings = holdings
        self.batch_size = batch_size
        self.db = Dedicated(dsn, queries.schema, "finisher", indexed_plans=True)
        self._queue: queue.SimpleQueue[Outcome | None] = queue.SimpleQueue()
        self._stopped = threading.Event()
        self.flushed = 0

    def put(self, outcome: Outcome) -> bool:
        """Queue an outcome; False (and dropped) if this attempt was settled already."""
        if not self.holdings.settle(outcome.job_id, outcome.attempt):
            logger.warning("Dropping late outcome %s of job %s attempt %d: already settled",
                           outcome.state, outcome.job_id, outcome.attempt)
            return False
        self._queue.put(outcome)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Flush what is queued, then end the thread."""
        self._queue.put(None)
        self.join(timeout)

    def run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            batch: list[Outcome] = []
            if first is None:
                stopping = True
            else:
                batch.append(first)
            while len(batch) < self.batch_size:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            if batch:
                self._flush_with_retry(batch, give_up_after=10.0 if stopping else None)

    def _flush_with_retry(self, batch: list[Outcome], give_up_after: float | None) -> None:
        deadline = None if give_up_after is None else time.monotonic() + give_up_after
        while True:
            try:
                self._flush(batch)
                return
            except Exception as error:
                if not is_connection_error(error):
                    logger.exception("finisher: could not record %d outcomes", len(batch))
                delay = self.db.failed(error)
                if deadline is not None and time.monotonic() + delay > deadline:
                    logger.error("finisher: gave up recording %d outcomes; their leases will "
                                 "expire and the jobs will be rescued", len(batch))
                    return
                time.sleep(delay)

    def _flush(self, batch: list[Outcome]) -> None:
        finals = [o.finish_record() for o in batch if o.state != states.RETRY]
        retries = [o.retry_record() for o in batch if o.state == states.RETRY]
        channels = self.queries.channels()
        matched: set[str] = set()
        if finals:
            rows = self.db.execute(self.queries["job_finish"], {
                "outcomes": json_dumps(finals), "ids": [f["id"] for f in finals],
                "worker": self.worker_id, **channels})
            matched.update(str(r[0]) for r in rows)
        if retries:
            rows = self.db.execute(self.queries["job_retry"], {
                "retries": json_dumps(retries), "ids": [r["id"] for r in retries],
                "worker": self.worker_id, **channels})
            matched.update(str(r[0]) for r in rows)
        for outcome in batch:
            if outcome.job_id not in matched:
                logger.warning("Job %s attempt %d was no longer ours (rescued or revoked); "
                               "its %s outcome was not recorded",
                               outcome.job_id, outcome.attempt, outcome.state)
        self.holdings.forget([(o.job_id, o.attempt) for o in batch])
        self.flushed += len(batch)
