"""Batched maintenance work that stays out of the way of the hot path."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass



def run_batches(batch: Callable[[], int], size: int, seconds: float) -> float | None:
    """Run ``batch`` (one statement; returns how many rows it did) until one comes back
    short or ``seconds`` have passed, pausing as long as each batch took, so that a long
    catch-up holds the database at most half the time. Returns None when caught up, else
    the pause to take before the next run (the maintenance thread's other services run
    in between, so a catch-up never delays a heartbeat by more than ``seconds``)."""
    started = time.monotonic()
    while True:
        batch_started = time.monotonic()
        if batch() < size:
            return None
        pause = time.monotonic() - batch_started
        if time.monotonic() + pause - started >= seconds:
            return pause
        time.sleep(pause)
