"""Where a worker's claims start reading the claim index.

A claim reads the claim index of each queue in claim order (priority, then ``run_at``,
then id) from its start. Every job claimed leaves a dead entry there, which vacuum
removes and later scans mark dead and skip cheaply, unless some session holds a
snapshot older than them (a transaction left open, a long report, a lagging replica
with ``hot_standby_feedback``). Then each claim visits every dead entry's row again,
and a queue of 100 jobs/s loses most of its rate within minutes.

So while a worker works through a backlog (its last claim got every job it asked for),
each queue's next claim starts after the last job it claimed there; higher and lower
priorities are still read from their own start. A cursor cannot see a job that sorts
before it but becomes visible later: one whose transaction began earlier and committed
later (``run_at`` is the sending transaction's start), or a staged, retried or released
job. Those are found by the next claim from the start, which comes at least every
``rescan_interval`` (the poll interval) and whenever a claim falls short; in a backlog
they wait at most that long, and outside one nothing waits. When claims from the start
are slow, they come less often: at most 5 % of the claim loop's time goes to them.

Slow claims from the start are themselves the sign of a dead prefix. While the last one
took over ``SLOW_RESCAN``, an idle worker woken by a new job claims after its cursor
too: the new job sorts after every job the worker claimed before, so it is found
without reading the dead entries (enqueue→start under an old snapshot otherwise grows
with them, ~15 ms at 100,000). A job sorting before the cursor then waits for the next
claim from the start, as in a backlog.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pgqueue.worker.execution import ClaimedJob

if TYPE_CHECKING:
    from pgqueue.db.connection import Dedicated
    from pgqueue.db.queries import Queries

#: Above every priority (0-9): a queue's scan from its start.
FROM_START = 10
#: A claim from the start slower than this (seconds) is reading dead index entries: on a
#: clean index it takes one round trip, well under a millisecond to a few on a busy host.
SLOW_RESCAN = 0.010


class ClaimCursors:
    """Per-queue claim positions, used while claims come back full and while claims
    from the start are slow."""

    def __init__(self, queues: Sequence[str], rescan_interval: float = 1.0,
                 slow_rescan: float = SLOW_RESCAN) -> None:
        self.queues = list(queues)
        self.rescan_interval = rescan_interval
        self.slow_rescan = slow_rescan
        self.in_backlog = False
        #: The last claim from the start took longer than ``slow_rescan``.
        self.rescans_slow = False
        self._after: dict[str, tuple[int, datetime, str]] = {}
        #: ``time.monotonic()`` after which a claim reads from the start even in a backlog.
        self.next_rescan = float("-inf")

    def claim(self, claimer: Dedicated, queries: Queries, limit: int, worker: str,
              lease: float, held_tasks: Sequence[str] = ()) -> list[ClaimedJob]:
        """Claim up to ``limit`` jobs on ``claimer`` from where the cursors are; returns
        them in claim order. Jobs with a ``concurrency_key`` and jobs of ``held_tasks``
        (rate-limited) are left to :mod:`pgqueue.worker.gates`. Database errors
        propagate, with nothing recorded."""
        position = {**self.params(), "held_tasks": list(held_tasks)}
        claimer.connect()  # a claim's time is its statement's, not a reconnect's
        started = time.monotonic()
        rows = claimer.execute(queries[statement(position)], {
            **position, "limit": limit, "worker": worker, "lease": lease})
        return self.claimed(position, limit, [ClaimedJob.from_row(r) for r in rows],
                            time.monotonic() - started)

    def params(self) -> dict[str, Any]:
        """The position parameters of the next claim (see :func:`statement`)."""
        if not (self.in_backlog or self.rescans_slow) or time.monotonic() >= self.next_rescan:
            return from_start(self.queues)
        after = [self._after.get(queue) for queue in self.queues]
        return {
            "queues": self.queues,
            "after_priority": [a[0] if a else FROM_START for a in after],
            "after_run_at": [a[1] if a else None for a in after],
            "after_id": [a[2] if a else None for a in after],
            "held_tasks": [],
        }

    def claimed(self, params: dict[str, Any], limit: int, jobs: list[ClaimedJob],
                seconds: float) -> list[ClaimedJob]:
        """Record a claim of at most ``limit`` jobs that took ``seconds``; returns the
        jobs in claim order."""
        jobs = sorted(jobs, key=lambda j: (-j.priority, j.run_at, j.id))
        if all(p == FROM_START for p in params["after_priority"]):
            self.next_rescan = time.monotonic() + max(self.rescan_interval, 20 * seconds)
            self.rescans_slow = seconds > self.slow_rescan
        self.in_backlog = len(jobs) >= limit
        for job in jobs:
            self._after[job.queue] = (job.priority, job.run_at, job.id)
        return jobs


def statement(position: dict[str, Any]) -> str:
    """The name of the claim statement for ``position`` (from :meth:`ClaimCursors.params`):
    a lighter one for a single queue read from its start, the usual claim of an idle
    worker; the ``_held`` variants while some tasks are held back (rate-limited)."""
    held = "_held" if position.get("held_tasks") else ""
    if len(position["queues"]) == 1 and position["after_priority"] == [FROM_START]:
        return f"job_claim_one_queue{held}"
    return f"job_claim{held}"


def from_start(queues: Sequence[str]) -> dict[str, Any]:
    """``job_claim`` position parameters that read every queue from its start (and
    hold back no task)."""
    return {"queues": list(queues), "after_priority": [FROM_START] * len(queues),
            "after_run_at": [None] * len(queues), "after_id": [None] * len(queues),
            "held_tasks": []}
