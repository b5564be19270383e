"""The partitions of ``results``: days added ahead, days past retention dropped.

Only once ``results`` is partitioned (``pgqueue migrate --partition-results``; by default
it is a plain table, and this does nothing): by finish time, one partition per UTC day,
each split by state (sql/migrations/0010_partitioned_results.sql). The leader adds
today's and the next days' partitions, so that finishes never land in the DEFAULT
partition, and drops (or, with ``result_archive_schema``, detaches into that schema) a
day's SUCCESS partition once the whole day is older than ``result_expires``, its
FAILURE/REVOKED partition once older than ``result_expires_failed``. Dropping a table
costs the same for ten rows or ten million, and leaves no dead rows for vacuum.
Retention shorter than a day is the :class:`~pgqueue.services.pruner.Pruner`'s, row by
row.
"""

from __future__ import annotations

import logging
import math
import time

from psycopg import sql

from pgqueue.db.connection import Dedicated, is_connection_error
from pgqueue.db.queries import Queries

logger = logging.getLogger("pgqueue.maintenance")

DAY = 86400.0


class Partitioner:
    """Adds the partitions of the next ``days_ahead`` days and prunes expired ones."""

    name = "partitioner"
    leader_only = True
    WARN_EVERY = 300.0

    def __init__(self, queries: Queries, result_expires: float | None,
                 result_expires_failed: float | None, archive_schema: str | None = None,
                 interval: float = 300.0, days_ahead: int = 1) -> None:
        self.queries = queries
        # None or 0: kept for ever (NULL to the statement)
        self.success_for = result_expires or None
        self.other_for = result_expires_failed or None
        self.archive_schema = archive_schema
        self.interval = interval
        self.days_ahead = days_ahead
        self.pruned: list[tuple[str, int, bool]] = []  # by the last run
        self._warned_at = -math.inf
        self._table = {"table": sql.Identifier(queries.schema, "results").as_string(None)}

    def run_once(self, db: Dedicated) -> float:
        self.pruned = []
        if not db.execute(self.queries["result_partitioned"], self._table)[0][0]:
            return self.interval  # a plain table: the Pruner's, row by row
        try:
            db.execute(self.queries["result_partition_add"], {"days": self.days_ahead + 1})
            self.pruned = [tuple(row) for row in db.execute(
                self.queries["result_partition_prune"],
                {"success_for": self.success_for, "other_for": self.other_for,
                 "archive": self.archive_schema})]
        except Exception as error:
            if is_connection_error(error):
                raise
            # a lock not granted within a second (a long query on results), a missing
            # archive schema: nothing was changed, and the next run tries again
            self._warn(error)
            return min(self.interval, 60.0)
        for partition, rows, archived in self.pruned:
            logger.info("results partition %s (about %d rows) %s", partition, rows,
                        "archived" if archived else "dropped")
        return self.interval

    def _warn(self, error: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at < self.WARN_EVERY:
            return
        self._warned_at = now
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        logger.warning("results partitions not maintained this time: %s", message)
