"""The task bodies every system runs. Each system's task is a one-line wrapper around these.

This module imports nothing outside the standard library, so the peers' virtualenv (which
has no pgqueue) imports it too.
"""

from __future__ import annotations

import os
import time

#: Where :func:`record_latency` appends; set by the harness for the worker processes.
LATENCY_FILE_ENV = "BENCH_LATENCY_FILE"

_latency_fd: int | None = None


def noop() -> None:
    """The drain workload: no work at all, so the figure is the queue's own cost."""
    return None


def record_latency(sent_at: float) -> None:
    """The latency workload: append ``now - sent_at`` (seconds) as one line.

    ``sent_at`` is ``time.time()`` taken by the producer just before its enqueue call,
    so the figure is what a caller sees: enqueue call + commit + wake-up + claim + start.
    One ``write`` on an ``O_APPEND`` descriptor is atomic for a short line, so worker
    processes and threads can share the file.
    """
    started = time.time()
    global _latency_fd
    if _latency_fd is None:
        _latency_fd = os.open(os.environ[LATENCY_FILE_ENV],
                              os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_latency_fd, f"{started - sent_at:.7f}\n".encode())
