"""Which running jobs were asked to abort.

A worker process keeps the set in memory, filled from the control requests it reads
when NOTIFY wakes it (see pgqueue.control); elsewhere (a prefork child, a producer) the
database answers, from the flag that the abort set on the job's row.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgqueue.app import App

_lock = threading.Lock()
_local: set[str] | None = None


def _forget_in_child() -> None:
    # Every job's end takes the lock: another thread may have held it at the fork.
    global _lock, _local
    _lock = threading.Lock()
    _local = None


os.register_at_fork(after_in_child=_forget_in_child)


def track_locally() -> None:
    """This process receives control notifications: answer from memory."""
    global _local
    with _lock:
        _local = set()


def ask_database() -> None:
    """This process does not receive notifications (e.g. a prefork child)."""
    global _local
    with _lock:
        _local = None


def mark(job_ids: list[str]) -> None:
    with _lock:
        if _local is not None:
            _local.update(job_ids)


def discard(job_id: str) -> None:
    with _lock:
        if _local is not None:
            _local.discard(job_id)


def is_aborted(app: App, job_id: str) -> bool:
    with _lock:
        if _local is not None:
            return job_id in _local
    return bool(app.execute("job_aborted", {"ids": [job_id]}))

