"""The jobs one worker holds: claimed in the database and not yet finished there.

Heartbeats extend the leases of every held job; shutdown hands them back. An outcome is
accepted once per attempt (:meth:`Holdings.settle`), so a late outcome of a job already
failed for its time limit is dropped instead of finishing the job twice.

An abort or terminate request can name a job this worker has claimed in the database
but not registered here yet (the claim committed, the worker has not read its rows):
such requests are remembered for a while (:meth:`Holdings.held_or_remember`), and
:meth:`Holdings.add` hands them over when the job is registered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

CLAIMED, RUNNING, SETTLED = "claimed", "running", "settled"
#: How long a request for a job not held here is remembered (seconds), and for how many
#: jobs at most: the gap it covers is one claim's round trip.
EARLY_TTL, EARLY_MAX = 30.0, 10_000


@dataclass(slots=True)
class Held:
    attempt: int
    status: str = CLAIMED


class Holdings:
    def __init__(self) -> None:
        self._jobs: dict[str, Held] = {}
        self._lock = threading.Lock()
        #: Called (outside the lock) with the ids of the attempts :meth:`forget` dropped:
        #: their outcomes are written, so their concurrency slots are free.
        self.on_forget: Callable[[list[str]], None] | None = None
        #: job id -> (actions asked before it was held, monotonic time they lapse).
        self._early: dict[str, tuple[set[str], float]] = {}

    def add(self, job_id: str, attempt: int) -> set[str]:
        """Hold ``job_id``; returns the actions ("abort", "terminate") asked for it
        while it was claimed but not yet held here."""
        with self._lock:
            self._jobs[job_id] = Held(attempt)
            early = self._early.pop(job_id, None)
        if early is None or early[1] < time.monotonic():
            return set()
        return early[0]

    def held_or_remember(self, action: str, job_ids: Iterable[str]) -> list[str]:
        """The ids held here; ``action`` is remembered for the others, which this worker
        may have claimed already (and :meth:`add` hands it over)."""
        now = time.monotonic()
        held = []
        with self._lock:
            if len(self._early) >= EARLY_MAX:
                self._early = {i: e for i, e in self._early.items() if e[1] >= now}
            for job_id in job_ids:
                if job_id in self._jobs:
                    held.append(job_id)
                elif len(self._early) < EARLY_MAX:
                    actions = self._early.get(job_id, (set(), 0.0))[0]
                    self._early[job_id] = (actions | {action}, now + EARLY_TTL)
        return held

    def start(self, job_id: str) -> None:
        with self._lock:
            held = self._jobs.get(job_id)
            if held is not None and held.status == CLAIMED:
                held.status = RUNNING

    def settle(self, job_id: str, attempt: int) -> bool:
        """Claim the right to finish this attempt; False if it was settled already."""
        with self._lock:
            held = self._jobs.get(job_id)
            if held is None or held.attempt != attempt or held.status == SETTLED:
                return False
            held.status = SETTLED
            return True

    def forget(self, attempts: list[tuple[str, int]], settled_only: bool = False) -> None:
        """Drop these (job id, attempt) pairs. A job retried at once may be held again
        under its next attempt by the time the previous one is forgotten: keep that.
        A snoozed job is held again under the SAME attempt: ``settled_only`` (outcomes
        written) keeps a holding claimed anew since, or its own outcome would be dropped
        as late and the job would wait out its lease."""
        with self._lock:
            for job_id, attempt in attempts:
                held = self._jobs.get(job_id)
                if held is not None and held.attempt == attempt and (
                        not settled_only or held.status == SETTLED):
                    del self._jobs[job_id]
        if self.on_forget is not None:
            self.on_forget([job_id for job_id, _ in attempts])

    def snapshot(self) -> tuple[list[str], list[int], list[bool]]:
        """Ids, attempts, and whether each started running (for heartbeat and release)."""
        with self._lock:
            items = list(self._jobs.items())
        return ([job_id for job_id, _ in items], [h.attempt for _, h in items],
                [h.status != CLAIMED for _, h in items])

    def unsettled(self) -> tuple[list[str], list[int], list[bool]]:
        with self._lock:
            items = [(i, h) for i, h in self._jobs.items() if h.status != SETTLED]
        return ([i for i, _ in items], [h.attempt for _, h in items],
                [h.status == RUNNING for _, h in items])

    def __contains__(self, job_id: object) -> bool:
        with self._lock:
            return job_id in self._jobs

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)
