"""The pruner: results expired row by row, workflow groups past the same retention,
and workers long gone.

By default ``results`` is a plain table and every expired result is deleted here. Once
it is partitioned (``pgqueue migrate --partition-results``), results go by whole
partitions (:mod:`pgqueue.services.partitions`) when their retention is a day or more; a
retention shorter than a day (a day's partition) cannot wait for its partition, so
those results are still deleted here, row by row.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from pgqueue.db.connection import Dedicated
from pgqueue.db.queries import Queries
from pgqueue.services.batches import run_batches
from pgqueue.services.partitions import DAY
from pgqueue.utils import utcnow

if TYPE_CHECKING:
    pass

logger = logging.getLogger("pgqueue.maintenance")

# (SUCCESS results, other results, or None: all; their retention; the statement)
Kind = tuple[bool | None, float, str]


class Pruner:
    """Deletes results older than their retention (SUCCESS: ``result_expires``; FAILURE
    and REVOKED: ``result_expires_failed``, by default the same), oldest first, and
    workers long gone. When results is partitioned, only a retention shorter than a day
    (and the DEFAULT partition's rows): the :class:`Partitioner` drops whole days.

    The rows of ``canvas_groups`` (a group's members, for ``GroupResult.restore`` and a
    chord body's parent) go ``result_expires`` after the group was sent, once nothing
    of it is live and no result of its members or chord body is younger than that
    (``canvas_group_prune``), ``group_batch`` groups a statement; and claims of
    periodic workflow starters no longer live (``canvas_start_prune``).

    A run deletes batches in the order of ``results_finished_at_idx`` (see
    :func:`run_batches`) until caught up or ``run_seconds`` have passed, and asks to run
    again soon when there is more. When a catch-up has lasted longer than
    ``behind_after`` (default: ``interval``), results are finishing faster than they are
    deleted, and it says so in the log, at most once per ``WARN_EVERY`` seconds.
    """

    name = "pruner"
    leader_only = True
    WARN_EVERY = 300.0
    #: Seconds after which a kind read on from where it stopped (two retentions, plain
    #: table) is read from the start again, for the rows that came in behind the last
    #: one read: written with an old finish time by plain SQL, or committed by a
    #: transaction that began before it and outlasted the retention.
    REREAD_EVERY = 3600.0

    def __init__(self, queries: Queries, result_expires: float | None, worker_ttl: float,
                 interval: float = 60.0, batch: int = 5000, run_seconds: float = 1.0,
                 behind_after: float | None = None,
                 result_expires_failed: float | None = None,
                 archive_schema: str | None = None, group_batch: int = 100) -> None:
        self.queries = queries
        self.group_batch = group_batch
        self.groups_deleted = 0
        # canvas_group_prune reads on from the last group read until it has read them
        # all: the old groups still live at the front are not read again on every run
        self._groups_after: tuple[datetime, str] | None = None
        self.result_expires = result_expires
        # None: as long as successes; 0: for ever
        self.failed_expires = (result_expires if result_expires_failed is None
                               else result_expires_failed or None)
        self.archive_schema = archive_schema
        # (is SUCCESS, retention, statement) per kind of result (None: every state).
        # A plain results table: every expired row, as one kind when both retentions
        # are the same.
        # Two retentions: each kind's range holds rows of the other kind kept for longer
        # (no index has the state), so each kind is read from where it last stopped.
        self.plain_kinds: list[Kind] = (
            [(None, result_expires, "result_prune")] if self.failed_expires == result_expires
            and result_expires else
            [(success, seconds, "result_prune_kind") for success, seconds in
             ((True, result_expires), (False, self.failed_expires)) if seconds])
        # A partitioned one: below a day, in every partition; else only in the DEFAULT
        # partition (rows of days without a partition of their own, which no partition
        # drop takes away).
        self.partitioned_kinds: list[Kind] = [
            (success, seconds, "result_prune" if seconds < DAY else "result_prune_default")
            for success, seconds in ((True, result_expires), (False, self.failed_expires))
            if seconds]
        self.by_rows = self.plain_kinds
        self._table = {"table": sql.Identifier(queries.schema, "results").as_string(None)}
        self.worker_ttl = worker_ttl
        self.interval = interval
        self.batch = batch
        self.run_seconds = run_seconds
        self.behind_after = interval if behind_after is None else behind_after
        self.deleted = 0  # by the current catch-up
        self._catch_up_since: float | None = None
        # per kind, the newest finish time deleted so far
        self._after: dict[bool | None, datetime | None] = {}
        # result_prune_kind: per kind, the last finish time read, kept from run to run,
        # and since when it has been read from the start
        self._read_to: dict[bool | None, datetime] = {}
        self._read_since: dict[bool | None, float] = {}
        self._ran_at = -math.inf
        # results_early_prune: the last note read (None: from the start), and how many
        # notes it has deleted
        self._early_after: str | None = None
        self.early_deleted = 0
        self._warned_at = -math.inf

    def run_once(self, db: Dedicated) -> float:
        db.execute(self.queries["worker_prune"], {"older_than": self.worker_ttl})
        db.execute(self.queries["unique_claim_prune"])  # claims that can never hold again
        db.execute(self.queries["canvas_start_prune"])
        groups_pause = None
        retention = self.result_expires
        if retention:
            db.execute(self.queries["job_history_prune"], {"older_than": retention})
            if self._groups_after is not None or db.execute(
                    self.queries["canvas_group_due"], {"older_than": retention})[0][0]:
                groups_pause = run_batches(lambda: self._prune_groups(db, retention),
                                           self.group_batch, self.run_seconds)
        self._prune_early(db)
        self.by_rows = self._kinds(db)
        if not self.by_rows:
            return self.interval if groups_pause is None else groups_pause
        started = time.monotonic()
        # A catch-up goes on from the run before only if that run asked to go on and was
        # not cut off since (a lost leader lease, an outage).
        if self._catch_up_since is None or started - self._ran_at > self.interval:
            self._catch_up_since, self.deleted, self._after = started, 0, {}
        for success, _, _ in self.by_rows:
            if started - self._read_since.get(success, -math.inf) > self.REREAD_EVERY:
                self._read_since[success] = started
                self._read_to.pop(success, None)
        pause = run_batches(lambda: self._prune(db), self.batch, self.run_seconds)
        self._ran_at = time.monotonic()
        if pause is None:
            self._catch_up_since = None
            return self.interval if groups_pause is None else groups_pause
        self._check_behind(db)
        return pause if groups_pause is None else min(pause, groups_pause)

    def _prune_groups(self, db: Dedicated, seconds: float) -> int:
        """One batch of groups, read on from the last one read: how many were read."""
        after_at, after_id = self._groups_after or (None, None)
        deleted, read, last_at, last_id = db.execute(self.queries["canvas_group_prune"], {
            "older_than": seconds, "limit": self.group_batch,
            "after_at": after_at, "after_id": after_id})[0]
        self.groups_deleted += deleted
        # a short batch read the last of them: the next run starts from the oldest again
        self._groups_after = (last_at, last_id) if read >= self.group_batch else None
        return int(read)

    def _kinds(self, db: Dedicated) -> list[Kind]:
        """What to delete row by row, by the layout of results (it may be converted
        while workers run)."""
        if db.execute(self.queries["result_partitioned"], self._table)[0][0]:
            return self.partitioned_kinds
        if self.archive_schema and self.plain_kinds:
            # archiving moves whole partitions; deleting rows the settings ask to keep
            # would lose them
            self._warn_once(
                f"result_archive_schema is {self.archive_schema!r} but results is not "
                "partitioned: expired results are kept, not deleted, until you run "
                "`pgqueue migrate --partition-results` or unset result_archive_schema "
                "(see History that scales in docs/deploying.md)")
            return []
        return self.plain_kinds

    def _warn_once(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= self.WARN_EVERY:
            self._warned_at = now
            logger.warning("%s", message)

    def _prune(self, db: Dedicated) -> int:
        """One batch of each kind; a full batch of either asks for another round."""
        most = 0
        for success, seconds, statement in self.by_rows:
            if statement == "result_prune_kind":
                most = max(most, self._prune_kind(db, bool(success), seconds))
                continue
            try:
                count, newest = db.execute(self.queries[statement], {
                    "older_than": seconds, "limit": self.batch, "success": success,
                    "after": self._after.get(success)})[0]
            except psycopg.errors.SerializationFailure:
                # a row of the batch moved to another partition meanwhile (plain SQL
                # changed its finish time): the next run looks again
                return 0
            self.deleted += count
            self._after[success] = newest or self._after.get(success)
            most = max(most, int(count))
        return most

    def _prune_kind(self, db: Dedicated, success: bool, seconds: float) -> int:
        """One batch of one kind, read on from the last row read: how many rows read."""
        deleted, read, last = db.execute(self.queries["result_prune_kind"], {
            "older_than": seconds, "limit": self.batch, "success": success,
            "after": self._read_to.get(success)})[0]
        self.deleted += deleted
        if last is not None:
            self._read_to[success] = last
        return int(read)

    def _prune_early(self, db: Dedicated) -> None:
        """The notes of ``results_early`` whose results are gone, a batch at a time in
        the order of its primary key, from where the last run stopped (at least one
        batch a run); a pass that reaches the end starts from the beginning next run."""
        deadline = time.monotonic() + self.run_seconds
        while True:
            last, read, deleted = db.execute(self.queries["results_early_prune"], {
                "after": self._early_after, "limit": self.batch})[0]
            self.early_deleted += deleted
            self._early_after = last if read == self.batch else None
            if self._early_after is None or time.monotonic() >= deadline:
                return

    def _check_behind(self, db: Dedicated) -> None:
        assert self._catch_up_since is not None
        now = time.monotonic()
        busy = now - self._catch_up_since
        if busy < self.behind_after or now - self._warned_at < self.WARN_EVERY:
            return
        if not self.deleted:
            return  # reading past kept rows (the first reading of a kind), nothing due
        self._warned_at = now
        oldest = db.execute(self.queries["result_oldest"])[0][0]
        age = (utcnow() - oldest).total_seconds() if oldest else 0.0
        logger.warning(
            "Result pruner is falling behind: expired results are still left after %.0fs "
            "of deleting (%d rows, %.0f rows/s); the oldest finished %.0fs ago "
            "(result_expires is %.0fs). The database is overloaded or something blocks "
            "the deletes; see Retention in docs/tuning.md",
            busy, self.deleted, self.deleted / max(busy, 1e-9), age, self.result_expires)
