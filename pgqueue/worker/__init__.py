"""The worker: claims jobs, runs them in a pool, finishes them (see docs/architecture.md).

A process that only sends tasks and reads results never imports this package.
``Worker`` is loaded on first use, so that importing one module of the package (eager
execution imports :mod:`.execution`) does not load them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgqueue.worker.worker import Worker

__all__ = ["Worker"]


def __getattr__(name: str) -> Any:
    if name == "Worker":
        from pgqueue.worker.worker import Worker

        return Worker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
