"""Writes outcomes of finished attempts in batches: one statement per kind per flush.

The thread flushes as soon as it has anything; outcomes that arrive while a flush is in
flight form the next batch. That keeps latency low when idle and round trips few when busy.

A lost connection retries the batch, as does a database that refuses every write for now
(see :func:`retry_later`). A statement refused for what it carries (a value
jsonb cannot hold, which the workers' checks should have caught) is split in halves until
the refused outcome is alone; that one is stored as FAILURE instead, or, should even that
fail, logged and dropped: its lease then runs out and the rescuer takes the job over.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from pgqueue import states
from pgqueue.db.connection import Dedicated, is_connection_error, one_line
from pgqueue.db.queries import Queries
from pgqueue.exceptions import SchemaMissing
from pgqueue.utils import json_dumps, storable_text
from pgqueue.worker.execution import SNOOZED, Outcome, describe_error, exception_payload
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
        try:
            self._serve()
        finally:
            self.db.close()  # a worker stopped in a process that goes on must not leak it

    def _serve(self) -> None:
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
                if not retry_later(error):  # a bug: never retry it for ever
                    logger.exception("finisher: dropped %d outcomes; their leases will expire "
                                     "and the jobs will be rescued", len(batch))
                    self.holdings.forget([(o.job_id, o.attempt) for o in batch],
                                         settled_only=True)
                    return
                if not is_connection_error(error):
                    logger.error("finisher: the database refuses to record %d outcomes (%s); "
                                 "retrying", len(batch), one_line(error))
                delay = self.db.failed(error)
                if deadline is not None and time.monotonic() + delay > deadline:
                    logger.error("finisher: gave up recording %d outcomes; their leases will "
                                 "expire and the jobs will be rescued", len(batch))
                    return
                time.sleep(delay)

    def _flush(self, batch: list[Outcome]) -> None:
        finals = [o for o in batch if o.state not in (states.RETRY, SNOOZED)]
        retries = [o for o in batch if o.state == states.RETRY]
        snoozes = [o for o in batch if o.state == SNOOZED]
        handled: set[str] = set()
        if finals:
            handled |= self._write("job_finish", finals)
        if retries:
            handled |= self._write("job_retry", retries)
        if snoozes:
            handled |= self._write("job_snooze", snoozes)
        for outcome in batch:
            if outcome.job_id not in handled:
                logger.warning("Job %s attempt %d was no longer ours (rescued or revoked); "
                               "its %s outcome was not recorded",
                               outcome.job_id, outcome.attempt, outcome.state)
        self.holdings.forget([(o.job_id, o.attempt) for o in batch], settled_only=True)
        self.flushed += len(batch)

    def _write(self, name: str, outcomes: list[Outcome]) -> set[str]:
        """Run statement ``name`` for ``outcomes``; the ids it recorded (or gave up on,
        with a log line). Raises only what :func:`retry_later` retries."""
        try:
            return self._execute(name, outcomes)
        except Exception as error:
            if retry_later(error):
                raise
            if len(outcomes) == 1:
                return self._store_failure(outcomes[0], error)
            half = len(outcomes) // 2
            return self._write(name, outcomes[:half]) | self._write(name, outcomes[half:])

    def _execute(self, name: str, outcomes: list[Outcome]) -> set[str]:
        if name == "job_finish":
            params = {"outcomes": json_dumps([o.finish_record() for o in outcomes])}
        elif name == "job_snooze":
            params = {"snoozes": json_dumps([o.snooze_record() for o in outcomes])}
        else:
            params = {"retries": json_dumps([o.retry_record() for o in outcomes])}
        rows = self.db.execute(self.queries[name], {
            **params, "ids": [o.job_id for o in outcomes], "worker": self.worker_id,
            **self.queries.channels()})
        return {str(r[0]) for r in rows}

    def _store_failure(self, outcome: Outcome, error: Exception) -> set[str]:
        """End the job of an outcome the database refused: FAILURE with a note of why."""
        reason = storable_text(one_line(error), 300)
        logger.error("finisher: the %s outcome of job %s attempt %d could not be stored "
                     "(%s); storing FAILURE instead", outcome.state, outcome.job_id,
                     outcome.attempt, reason)
        exc = ValueError(f"outcome could not be stored: {reason}")
        stand_in = Outcome(outcome.job_id, outcome.attempt, states.FAILURE,
                           result=exception_payload(exc), error=describe_error(exc),
                           runtime=outcome.runtime)
        try:
            return self._execute("job_finish", [stand_in])
        except Exception as again:
            if retry_later(again):
                raise
            logger.error("finisher: dropped the outcome of job %s attempt %d: even a FAILURE "
                         "could not be stored (%s); its lease will expire and the rescuer "
                         "will retry or fail the job", outcome.job_id, outcome.attempt,
                         storable_text(one_line(again), 300))
            return {outcome.job_id}


#: Refusals of a statement that are about the database, not the batch: a lost grant,
#: a read-only standby after a failover. They end when an operator acts; meanwhile the
#: worker keeps the jobs (and their leases) and retries, as for a lost connection.
_REFUSED_FOR_NOW = frozenset({"42501", "25006"})  # insufficient_privilege, read_only
#: Refusals that only say another transaction was in the way: two finishes advancing the
#: same workflow steps (see sql/migrations/0006_canvas.sql) may meet in a deadlock, which
#: Postgres breaks by failing one of them; that one is simply run again.
_TRANSIENT = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure


def retry_later(error: BaseException) -> bool:
    """Whether the same statement may succeed later: the connection went away, or the
    database refuses every write for now. Anything else may be about what the batch
    carries. psycopg classes "program limit exceeded" (SQLSTATE class 54: a value too
    large or nested too deep) as operational, but that is about the content too."""
    sqlstate = getattr(error, "sqlstate", None) or ""
    if is_connection_error(error):
        return not sqlstate.startswith("54")
    return sqlstate in _REFUSED_FOR_NOW or sqlstate in _TRANSIENT \
        or isinstance(error, SchemaMissing)
