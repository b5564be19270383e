"""The canvas sweeper: workflow steps that nothing will ever release are ended.

A waiting step (``canvas_steps``) moves on in the statement that moves one of its
predecessors into ``results`` (``canvas_advance``). A predecessor that never gets there
(its jobs row deleted by plain SQL, before or after it started; a step deleted; an id
that never existed) would leave the step waiting for ever, and so would a step whose
rows were edited so that it waits for nothing. The maintenance leader reads the waiting
steps a batch at a time in primary key order, from where its last batch stopped, and
notes the predecessors that are neither live (``jobs``, ``canvas_steps``) nor final
(``results``) and the steps with no edge left. What it still finds so ``grace`` seconds
later is ended through ``results``, so that ``AsyncResult.get()`` returns and the
trigger stops what follows, as after any ending:

- a lost predecessor gets a REVOKED result whose error says so; the chain steps after
  it end REVOKED (``stopped: ... ended REVOKED (lost: ...)``), a chord body FAILURE
  (``ChordError`` naming it), its link_error callbacks run;
- a predecessor that does have a result (its edges outlived it: a restore that ran
  without triggers) has the trigger run on that result again;
- a step that waits for nothing ends FAILURE (``MalformedJob``), and what follows it.

Two sightings ``grace`` apart, rather than one, so that no row moved out and back by
hand within that time is taken for lost. See docs/canvas.md, "Stranded steps".
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from pgqueue.services.batches import run_batches

if TYPE_CHECKING:
    from pgqueue.db.connection import Dedicated
    from pgqueue.db.queries import Queries

logger = logging.getLogger("pgqueue.maintenance")

#: What the sweeper notes: a predecessor gone, or a step stranded.
GONE, STRANDED = "gone", "stranded"


class StepSweeper:
    """Ends the workflow steps whose predecessors are lost, and the steps that wait for
    nothing, ``grace`` seconds after it first saw them so; reads ``batch`` steps a
    statement for at most ``run_seconds`` a run, every ``interval`` seconds."""

    name = "canvas_sweeper"
    leader_only = True

    def __init__(self, queries: Queries, interval: float = 60.0, grace: float = 300.0,
                 batch: int = 500, run_seconds: float = 1.0,
                 max_suspects: int = 10_000) -> None:
        if grace < 0 or interval <= 0 or batch < 1:
            raise ValueError("StepSweeper: grace >= 0, interval > 0 and batch >= 1")
        self.queries = queries
        self.interval = interval
        self.grace = grace
        self.batch = batch
        self.run_seconds = run_seconds
        self.max_suspects = max_suspects
        # (kind, id) -> when first seen so (monotonic); kept while each pass sees it again
        self.suspects: dict[tuple[str, str], float] = {}
        self._seen: set[tuple[str, str]] = set()  # by the pass under way
        self._after: str | None = None  # the last step read by the pass under way
        # the last ids ended as lost or stranded, and replayed (for tests and a debugger)
        self.ended: deque[str] = deque(maxlen=1000)
        self.replayed: deque[str] = deque(maxlen=1000)

    def run_once(self, db: Dedicated) -> float:
        self._end_due(db)
        pause = run_batches(lambda: self._scan(db), self.batch, self.run_seconds)
        wait = self.interval if pause is None else pause
        if self.suspects:  # come back when the first of them is due
            due = min(self.suspects.values()) + self.grace - time.monotonic()
            wait = min(wait, max(due, 0.0))
        return wait

    def _scan(self, db: Dedicated) -> int:
        """One batch of steps: what it found is noted; returns how many it read."""
        read, last, gone, stranded = db.execute(self.queries["canvas_step_scan"], {
            "after_id": self._after, "limit": self.batch, "grace": self.grace})[0]
        now = time.monotonic()
        for kind, ids in ((GONE, gone), (STRANDED, stranded)):
            for found in ids:
                key = (kind, found)
                self._seen.add(key)
                if key not in self.suspects and len(self.suspects) < self.max_suspects:
                    self.suspects[key] = now
        if read < self.batch:  # the pass is over: forget what it did not see again
            self.suspects = {k: t for k, t in self.suspects.items() if k in self._seen}
            self._seen = set()
            self._after = None
        else:
            self._after = last
        return int(read)

    def _end_due(self, db: Dedicated) -> None:
        """End what has been seen for ``grace`` seconds (each statement looks again)."""
        now = time.monotonic()
        due = [k for k, seen in self.suspects.items() if now - seen >= self.grace]
        if not due:
            return
        for key in due:
            del self.suspects[key]
        gone = [i for kind, i in due if kind == GONE]
        stranded = [i for kind, i in due if kind == STRANDED]
        if gone:
            lost, replayed, _ = db.execute(self.queries["canvas_lost_end"], {
                "ids": gone, "reason": self._lost_reason(), **self.queries.channels()})[0]
            self.ended.extend(lost)
            self.replayed.extend(replayed)
            if lost:
                logger.warning(
                    "Ended %d workflow predecessors that are in neither jobs nor results "
                    "(deleted by plain SQL?) after %.0fs: REVOKED, and the steps waiting "
                    "for them stopped: %s", len(lost), self.grace, _some(lost))
            if replayed:
                logger.warning(
                    "Advanced the workflow steps waiting for %d finished jobs whose "
                    "results had not advanced them (written with triggers off?): %s",
                    len(replayed), _some(replayed))
        if stranded:
            failed, _ = db.execute(self.queries["canvas_stranded_fail"], {
                "ids": stranded, "reason": self._stranded_reason(),
                **self.queries.channels()})[0]
            self.ended.extend(failed)
            if failed:
                logger.warning(
                    "Failed %d workflow steps that waited for nothing any more (their "
                    "canvas_steps/canvas_edges rows edited by plain SQL?): %s",
                    len(failed), _some(failed))

    def _lost_reason(self) -> str:
        return (f"lost: this job was in neither jobs nor results for {self.grace:g}s while "
                "workflow steps waited for it (its row deleted by plain SQL, or never "
                "sent); ended by the canvas sweeper")

    def _stranded_reason(self) -> str:
        return (f"stranded: this workflow step waited for nothing for {self.grace:g}s (no "
                "predecessor in its `after` has an edge left in canvas_edges: its rows "
                "were edited by plain SQL?); ended by the canvas sweeper")


def _some(ids: list[str], shown: int = 10) -> str:
    more = len(ids) - shown
    return ", ".join(ids[:shown]) + (f" and {more} more" if more > 0 else "")
