"""``pgqueue worker --autoscale=MAX,MIN``: the pool follows the backlog.

The rule, checked every second: *wanted* = jobs running + jobs waiting (queued, due now)
in the worker's queues, kept between MIN and MAX. The pool grows to *wanted* at once; it
shrinks to *wanted* only after *wanted* stayed below the pool's size for ``keepalive``
seconds (30, or ``$AUTOSCALE_KEEPALIVE`` as in Celery), so a short lull does not fork
and kill children back and forth. Slots that go are retired when idle: running jobs end
first. The count of waiting jobs stops at MAX, so the check reads at most MAX index
entries however long the backlog is.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgqueue.db.connection import Dedicated
    from pgqueue.worker.worker import Worker

logger = logging.getLogger("pgqueue.worker")


def parse(value: str) -> tuple[int, int]:
    """``"MAX,MIN"`` (or ``"MAX"``: MIN 0 as in Celery, kept at 1 here) as (max, min)."""
    parts = [p.strip() for p in str(value).split(",")]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2):
        raise ValueError(f"--autoscale takes MAX,MIN (two whole numbers, e.g. 10,3), got "
                         f"{value!r}")
    high, low = numbers[0], max(1, numbers[1] if len(numbers) == 2 else 1)
    if high < 1 or low > high:
        raise ValueError(f"--autoscale {value}: MAX must be at least 1 and MIN at most MAX")
    return high, low


class Autoscaler:
    """A worker service (``run_once(db)``) that resizes the pool; see the module doc."""

    name = "autoscale"
    leader_only = False

    def __init__(self, worker: Worker, max: int, min: int,  # noqa: A002
                 keepalive: float | None = None, interval: float = 1.0) -> None:
        self.worker = worker
        self.max, self.min = max, min
        self.keepalive = float(os.environ.get("AUTOSCALE_KEEPALIVE", 30)) \
            if keepalive is None else keepalive
        self.interval = interval
        self._lock = threading.Lock()
        self._low_since: float | None = None

    def update(self, max: int, min: int) -> None:  # noqa: A002
        """New bounds (``control autoscale``); the size moves into them at once."""
        with self._lock:
            self.max, self.min = max, min
            size = self.worker.pool.size
            if not min <= size <= max:
                self._resize(sorted((min, size, max))[1])

    def force(self, size: int) -> None:
        """``pool_grow``/``pool_shrink`` on an autoscaled worker: the bounds widen to
        ``size`` so that the next check keeps it."""
        with self._lock:
            self.max, self.min = max(self.max, size), min(self.min, size)
            self._resize(size)

    def run_once(self, db: Dedicated) -> float:
        worker = self.worker
        pool = worker.pool
        running = max(0, pool.size - pool.free_slots())
        rows = db.execute(worker.app.queries["job_count_ready"],
                          {"queues": list(worker.queues), "limit": self.max})
        with self._lock:
            wanted = sorted((self.min, running + int(rows[0][0]), self.max))[1]
            size = pool.size
            now = time.monotonic()
            if wanted > size:
                self._resize(wanted)
            elif wanted < size:
                if self._low_since is None:
                    self._low_since = now
                elif now - self._low_since >= self.keepalive:
                    self._resize(wanted)
            else:
                self._low_since = None
        return self.interval

    def _resize(self, size: int) -> None:
        old = self.worker.pool.size
        self._low_since = None
        if size != old:
            logger.info("Autoscale: pool %s from %d to %d", "grows" if size > old
                        else "shrinks", old, size)
            self.worker.remote.resize(size)
