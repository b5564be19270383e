"""The default thread pool's size follows how long its jobs take.

A claim takes at most the free slots, and each claim is one round trip. When jobs end
faster than a claim comes back, the threads wait for claims and the rate is set by how
many jobs each claim brings: on the 2-core test machine 32 threads drained short jobs at
~70 % of the rate of 100 (``python -m bench``, the "defaults" row). More threads hurt
the other way: a worker runs (and so keeps from other workers) as many slow jobs as it
has slots.

So a ``-P threads`` worker whose concurrency nobody set starts at ``base`` slots (32) and
grows to ``ceiling`` (100) while it works through a backlog (its last claim came back
full) of short jobs (a running average of their run time under ``SHORT``); it goes back
to ``base`` as soon as that average is over ``LONG``. Slow jobs are therefore shared
among workers as before, at most ``base`` per worker once the average has seen them.
A worker still grown when slow jobs arrive may start up to ``ceiling`` of them before
their run times come in. Never more than one resize a second, and none once something
else (remote control ``pool_grow``/``pool_shrink``) set the size.
"""

from __future__ import annotations

import math
import time

#: Jobs shorter than this on average make a backlog worth more slots (seconds).
SHORT = 0.010
#: Jobs longer than this on average get the base size back.
LONG = 0.050
#: Weight of each new run time in the average (about the last 20 jobs count).
WEIGHT = 0.05
#: The least time between two resizes (seconds).
SPACING = 1.0


class ShortJobSizing:
    """Decides the pool's size from run times (:meth:`finished`) and the claim loop's
    backlog state (:meth:`wanted`)."""

    def __init__(self, base: int, ceiling: int) -> None:
        self.base, self.ceiling = base, ceiling
        self.size = base
        self.enabled = True
        #: Running average of run times; None until a job ended.
        self.average: float | None = None
        self._next_resize = float("-inf")

    def finished(self, runtime: float) -> None:
        """A job ran ``runtime`` seconds (called from the executor threads; a lost update
        between two of them only makes the average a little older)."""
        if not 0 < runtime < math.inf:  # none measured (time limit, terminated), garbage
            return
        average = self.average
        self.average = runtime if average is None else average + WEIGHT * (runtime - average)

    def wanted(self, current: int, in_backlog: bool) -> int | None:
        """The size the pool should take now, or None to leave it at ``current``."""
        if not self.enabled:
            return None
        if current != self.size:  # resized by someone else: theirs from now on
            self.enabled = False
            return None
        average = self.average
        if average is None or time.monotonic() < self._next_resize:
            return None
        if self.size < self.ceiling and in_backlog and average < SHORT:
            target = self.ceiling
        elif self.size > self.base and average > LONG:
            target = self.base
        else:
            return None
        self.size = target
        self._next_resize = time.monotonic() + SPACING
        return target
