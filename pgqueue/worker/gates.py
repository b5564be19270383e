"""Flow control in the claim: the limits of queues and tasks, obeyed by every worker.

The limits are rows of ``flow_limits`` (see ``sql/migrations/0007_flow_control.sql``).
Each worker keeps a copy, read again every second and at once after a NOTIFY on the
control channel. Its queues then fall in two kinds:

* **open** queues (no limit of their own, not paused) are claimed as before, by the
  statements of :mod:`pgqueue.worker.claiming`, which leave alone the jobs of
  rate-limited tasks and the jobs with a ``concurrency_key`` (two tests of the row the
  index scan reads anyway);
* everything else (a limited queue, and in an open queue those held-back jobs) goes
  through :meth:`Gates.claim_gated`: a short transaction that locks the limit rows it
  obeys (``FOR UPDATE``, in key order), counts what runs now, looks at the candidate
  jobs, locks their keys (advisory transaction locks, in hash order), claims what the
  limits allow, and moves the rates on. Two workers claiming at the same instant take
  turns on the locks, and the second one counts with a snapshot taken after the first
  committed, so neither can overshoot.

A rate of N per window W allows one start every ``W / N`` seconds, or, for fast rates,
a group of ``burst`` starts every ``burst * W / N`` (at most ~50 ms apart, and ``burst``
at most N / 25): any window of W seconds sees at most N + ``burst`` starts, N + 1 below
50/s and at most 4 % over N above. The next start is due one interval after the one
before was due, not after it came: a claim that comes late keeps the rate's pace, up to
just under a group's interval of delay (more is lost: an idle rate saves up no starts).
The worker knows when the next start is allowed and sleeps until then while it goes on
claiming its other queues.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgqueue import limits as checks
from pgqueue.worker.execution import ClaimedJob

if TYPE_CHECKING:
    from pgqueue.app import App
    from pgqueue.db.connection import Dedicated
    from pgqueue.db.queries import Queries
    from pgqueue.worker.claiming import ClaimCursors

#: How often the limits are read again without a NOTIFY (seconds).
REFRESH = 1.0
#: A queue whose limited jobs could not start for want of a concurrency slot, or that
#: had none to start, is looked at again after this long, or at once when a job becomes
#: ready there (a NOTIFY) or a keyed job this worker ran there ends. A slot freed by
#: another worker, or of a limited queue, waits for it.
RETRY = 0.2
#: The look-ahead of a limited claim: candidates per job it may start, and at most.
SCAN_PER_JOB, SCAN_MAX = 4, 500


@dataclass(frozen=True)
class Limit:
    """One row of ``flow_limits``."""

    scope: str
    name: str
    paused: bool = False
    concurrency: int | None = None
    rate_count: float | None = None
    rate_seconds: float | None = None

    @property
    def interval(self) -> float:
        """Seconds between two starts at this rate."""
        assert self.rate_count and self.rate_seconds
        return self.rate_seconds / self.rate_count

    @property
    def burst(self) -> int:
        """Starts allowed together (see :func:`burst`)."""
        return burst(self.rate_count or 1, self.rate_seconds or 1)

    @property
    def catch_up(self) -> float:
        """How much of a late start's delay the pace makes up (seconds): just under a
        group's interval, which keeps every window of the rate's length within
        N + ``burst`` starts."""
        return 0.9 * self.burst * self.interval

    @property
    def limits_claims(self) -> bool:
        return bool(self.concurrency or self.rate_count)


def burst(count: float, seconds: float) -> int:
    """Starts taken together: as many as start in 50 ms, at most N / 25 (4 %)."""
    return max(1, min(int(0.05 * count / seconds), int(count / 25)))


def code_limits(app: App, queues: Sequence[str]) -> list[dict[str, Any]]:
    """The limits the code gives: each registered task's ``rate_limit`` (or
    ``task_default_rate_limit``), and ``queue_concurrency``; a row without a limit
    clears one the code gave before (for this worker's tasks and queues only)."""
    conf = app.conf
    rows = []
    default = conf.task_default_rate_limit
    for name, task in sorted(app.tasks.items()):
        if name.startswith("pgqueue."):
            continue
        value = getattr(task, "rate_limit", None) or default
        rate = checks.rate(f"{name}: rate_limit", value)
        rows.append({"scope": "task", "name": name, "concurrency": None,
                     "rate_count": rate[0] if rate else None,
                     "rate_seconds": rate[1] if rate else None})
    configured: dict[str, int] = dict(conf.queue_concurrency or {})
    for queue in sorted(set(queues) | set(configured)):
        rows.append({"scope": "queue", "name": queue, "concurrency": configured.get(queue),
                     "rate_count": None, "rate_seconds": None})
    return rows


class Gates:
    """A worker's view of the limits, and its claims of limited jobs."""

    def __init__(self, queries: Queries, queues: Sequence[str], retry: float = RETRY) -> None:
        self.queries = queries
        self.queues = list(queues)
        self.retry = retry
        self.limits: dict[tuple[str, str], Limit] = {}
        #: Queues seen with queued keyed jobs at the last look.
        self.keyed: set[str] = set()
        self.stale = True
        self._refresh_at = 0.0
        #: queue -> monotonic time before which a limit forbids its next start.
        self._blocked_until: dict[str, float] = {}
        #: queue -> monotonic time before which its limited jobs are not looked for
        #: again (it had none, or no slot); a wake-up for the queue ends it.
        self._idle_until: dict[str, float] = {}
        #: Queues woken since the last claim (a NOTIFY, a slot freed here), and the
        #: limited jobs this worker runs (job id -> queue): set by other threads.
        self._woken: set[str] = set()
        self._gated_jobs: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- the limits -------------------------------------------------------------------
    def sync(self, claimer: Dedicated, app: App) -> None:
        """Write the code's limits (those set at run time win), then read them all."""
        claimer.execute(self.queries["flow_limit_sync"],
                        {"limits": json.dumps(code_limits(app, self.queues))})
        self.refresh(claimer)

    def refresh(self, claimer: Dedicated) -> None:
        rows = claimer.execute(self.queries["flow_limit_list"])
        self.limits = {(r[0], r[1]): Limit(r[0], r[1], bool(r[2]), r[3], r[4], r[5])
                       for r in rows}
        self.keyed = {r[0] for r in claimer.execute(self.queries["flow_keyed_queues"],
                                                    {"queues": self.queues})}
        self.stale = False
        self._refresh_at = time.monotonic() + REFRESH
        self._idle_until.clear()

    def set_queues(self, queues: Sequence[str]) -> None:
        """The worker claims from ``queues`` now (add_consumer, cancel_consumer)."""
        self.queues = list(queues)
        self.stale = True

    def changed(self) -> None:
        """Something may have changed the limits (a NOTIFY on the control channel)."""
        self.stale = True

    def notified(self, queue: str) -> None:
        """A job became ready in ``queue``: the next claim looks for limited jobs there
        (a keyed job free to run starts as soon as any other job)."""
        with self._lock:
            self._woken.add(queue)

    def finished(self, job_ids: list[str]) -> bool:
        """Jobs ended here; True if one was a keyed job, whose key the next claim may
        give to a waiting job at once."""
        if not self._gated_jobs:  # the usual case, read without the lock
            return False
        woken = False
        with self._lock:
            for job_id in job_ids:
                queue = self._gated_jobs.pop(job_id, None)
                if queue is not None:
                    self._woken.add(queue)
                    woken = True
        return woken

    def paused(self, queue: str) -> bool:
        limit = self.limits.get(("queue", queue))
        return limit is not None and limit.paused

    def open_queues(self) -> list[str]:
        """This worker's queues claimed as before: not paused, no limit of their own."""
        return [q for q in self.queues if not self._queue_limited(q) and not self.paused(q)]

    def held_tasks(self) -> list[str]:
        """Tasks with a rate limit, which only limited claims start."""
        return sorted(name for (scope, name), limit in self.limits.items()
                      if scope == "task" and limit.rate_count)

    def _queue_limited(self, queue: str) -> bool:
        limit = self.limits.get(("queue", queue))
        return limit is not None and limit.limits_claims

    def wait_time(self, longest: float) -> float:
        """Seconds until the next limited claim is due (or the refresh), at most
        ``longest``."""
        now = time.monotonic()
        due = self._refresh_at
        for queue in self.queues:
            if self._needs_gated(queue):
                due = min(due, self._due(queue))
        return max(0.0, min(longest, due - now))

    def _due(self, queue: str) -> float:
        return max(self._blocked_until.get(queue, 0.0), self._idle_until.get(queue, 0.0))

    def _needs_gated(self, queue: str) -> bool:
        return not self.paused(queue) and (
            self._queue_limited(queue) or queue in self.keyed or bool(self.held_tasks()))

    # -- claiming ---------------------------------------------------------------------
    def claim(self, claimer: Dedicated, cursors: ClaimCursors, limit: int, worker: str,
              lease: float) -> list[ClaimedJob]:
        """Up to ``limit`` jobs: limited ones first (their limits keep them few), then
        from the open queues. Database errors propagate."""
        if self.stale or time.monotonic() >= self._refresh_at:
            self.refresh(claimer)
        with self._lock:
            woken, self._woken = self._woken, set()
        for queue in woken:
            self._idle_until.pop(queue, None)
        jobs: list[ClaimedJob] = []
        now = time.monotonic()
        for queue in self.queues:
            if len(jobs) < limit and self._needs_gated(queue) and self._due(queue) <= now:
                jobs += self.claim_gated(claimer, queue, limit - len(jobs), worker, lease)
        open_queues = self.open_queues()
        if open_queues and len(jobs) < limit:
            cursors.queues = open_queues
            jobs += cursors.claim(claimer, self.queries, limit - len(jobs), worker, lease,
                                  held_tasks=self.held_tasks())
        if len(jobs) < limit:
            jobs += self._claim_new_keyed(claimer, woken, jobs, limit, worker, lease)
        return jobs

    def _claim_new_keyed(self, claimer: Dedicated, woken: set[str],
                         jobs: list[ClaimedJob], limit: int, worker: str,
                         lease: float) -> list[ClaimedJob]:
        """A job became ready in an open queue not known to hold keyed jobs, and the
        open claim found none there: it may be keyed. One probe of the keyed jobs'
        index, and a limited claim of the queues that have some, instead of waiting
        for the next refresh."""
        found = {job.queue for job in jobs}
        unexplained = [q for q in woken if q in self.queues and q not in found
                       and q not in self.keyed and not self.paused(q)
                       and not self._queue_limited(q)]
        if not unexplained:
            return []
        keyed = [r[0] for r in claimer.execute(self.queries["flow_keyed_queues"],
                                               {"queues": unexplained})]
        claimed: list[ClaimedJob] = []
        for queue in keyed:
            self.keyed.add(queue)
            if len(jobs) + len(claimed) < limit:
                claimed += self.claim_gated(claimer, queue,
                                            limit - len(jobs) - len(claimed), worker, lease)
        return claimed

    def claim_gated(self, claimer: Dedicated, queue: str, want: int, worker: str,
                    lease: float) -> list[ClaimedJob]:
        """One limited claim of at most ``want`` jobs of ``queue``, in one transaction;
        records when the queue's limits allow the next."""
        whole = self._queue_limited(queue)
        held = self.held_tasks()
        gates = ([("queue", queue)] if whole else []) + [("task", t) for t in held]
        started = time.monotonic()
        conn = claimer.connect()
        with conn.transaction():
            claimed, wake, slots_full = self._claim_locked(claimer, queue, want, worker,
                                                           lease, whole, gates)
        if claimed:
            self._blocked_until[queue] = started + max(0.0, wake)
            self._idle_until.pop(queue, None)
        elif math.isfinite(wake) and not (slots_full and wake >= self.retry):
            self._blocked_until[queue] = started + max(wake, 0.001)
        else:
            # No job, or no free slot: a wake-up for the queue ends the wait.
            self._idle_until[queue] = time.monotonic() + self.retry
        jobs = [ClaimedJob.from_row(r) for r in claimed]
        if not whole:
            # Keyed jobs: the next one of the key may start here when this one ends. A
            # limited queue's freed slot waits for the retry instead, so that this
            # worker does not take every slot of it from the others.
            with self._lock:
                self._gated_jobs.update((job.id, queue) for job in jobs)
        return jobs

    def _claim_locked(self, claimer: Dedicated, queue: str, want: int, worker: str,
                      lease: float, whole: bool, gates: list[tuple[str, str]]
                      ) -> tuple[list[Any], float, bool]:
        """The claim inside its transaction: the rows claimed, the seconds until a rate
        allows the next start here (inf: no rate is the reason to wait), and whether
        jobs wait for a concurrency slot (of the queue or of their keys)."""
        queries = self.queries
        locked: dict[tuple[str, str], tuple[Any, ...]] = {}
        if gates:
            rows = claimer.execute(queries["flow_limit_lock"], {
                "scopes": [g[0] for g in gates], "names": [g[1] for g in gates]})
            locked = {(r[0], r[1]): r for r in rows}
        wake = math.inf
        budget = want
        queue_rate: Limit | None = None
        queue_row = locked.get(("queue", queue))
        if whole and queue_row is not None:
            _, _, concurrency, count, seconds, due_in = queue_row
            if count:
                queue_rate = Limit("queue", queue, rate_count=count, rate_seconds=seconds)
                if due_in > 0:
                    return [], due_in, False
                budget = min(budget, queue_rate.burst)
            if concurrency:
                running = claimer.execute(queries["flow_queue_running"], {"queue": queue})
                budget = min(budget, concurrency - int(running[0][0]))
                if budget <= 0:
                    return [], math.inf, True
        task_rates: dict[str, Limit] = {}
        blocked: list[str] = []
        budgets: dict[str, int] = {}
        for scope, name in gates:
            row = locked.get((scope, name))
            if scope != "task" or row is None or not row[3]:
                continue
            task_rates[name] = Limit("task", name, rate_count=row[3], rate_seconds=row[4])
            if row[5] > 0:
                blocked.append(name)
                wake = min(wake, row[5])
            else:
                budgets[name] = task_rates[name].burst
        keyed = queue in self.keyed
        if not whole and not budgets and not keyed:
            return [], wake, False
        scan = min(SCAN_MAX, budget * SCAN_PER_JOB + 16)
        query = "flow_candidates" if whole or budgets else "flow_candidates_keyed"
        candidates = claimer.execute(queries[query], {
            "queue": queue, "whole": whole, "tasks": list(budgets), "blocked": blocked,
            "scan": scan})
        if not candidates:
            return [], wake, False
        keys = sorted({c[2] for c in candidates if c[2] is not None})
        if keys:
            claimer.execute(queries["flow_key_lock"], {"schema": queries.schema,
                                                        "keys": keys})
        rows = claimer.execute(queries["flow_claim"], {
            "ids": [c[0] for c in candidates], "tasks": [c[1] for c in candidates],
            "keys": [c[2] for c in candidates], "key_limits": [c[3] for c in candidates],
            "budget_tasks": list(budgets), "budget_counts": list(budgets.values()),
            "limit": budget, "worker": worker, "lease": lease})
        if not rows:
            return [], wake, True
        # Move each rate on by what it started.
        spent: dict[tuple[str, str], tuple[Limit, int]] = {}
        if queue_rate is not None:
            spent[("queue", queue)] = (queue_rate, len(rows))
        for name, rate in task_rates.items():
            started = sum(1 for r in rows if r[2] == name)
            if started:
                spent[("task", name)] = (rate, started)
        if spent:
            claimer.execute(queries["flow_limit_advance"], {
                "scopes": [k[0] for k in spent], "names": [k[1] for k in spent],
                "catch_up": [lim.catch_up for lim, _ in spent.values()],
                "spend": [n * lim.interval for lim, n in spent.values()]})
        # The next start here is due when the rate of the queue allows it; a task's
        # rate only holds back that task, which the next claim finds out.
        if queue_rate is not None:
            row_due = queue_row[5] if queue_row is not None else 0.0
            wake = max(row_due, -queue_rate.catch_up) + len(rows) * queue_rate.interval
        else:
            wake = 0.0
        return rows, wake, False
