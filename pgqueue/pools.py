"""Execution pools: where claimed jobs run. The worker loop only asks for free slots."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Protocol

from .execution import ClaimedJob


class Pool(Protocol):
    size: int

    def start(self) -> None: ...
    def free_slots(self) -> int: ...
    def submit(self, job: ClaimedJob) -> None: ...
    def wait_for_slot(self, timeout: float) -> None: ...
    def take_unstarted(self) -> list[ClaimedJob]: ...
    def join(self, timeout: float) -> bool: ...
    def shutdown(self) -> None: ...


class ThreadPool:
    """``-P threads``: ``size`` threads share the process (I/O-bound work)."""

    def __init__(self, size: int, run: Callable[[ClaimedJob], None]) -> None:
        self.size = size
        self._run = run
        self._queue: queue.SimpleQueue[ClaimedJob | None] = queue.SimpleQueue()
        self._busy = 0
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._work, name=f"pgqueue-exec-{i}", daemon=True)
            for i in range(size)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def free_slots(self) -> int:
        with self._cond:
            return self.size - self._busy

    def submit(self, job: ClaimedJob) -> None:
        with self._cond:
            self._busy += 1
        self._queue.put(job)

    def wait_for_slot(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._busy < self.size, timeout)

    def take_unstarted(self) -> list[ClaimedJob]:
        taken = []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                taken.append(job)
        with self._cond:
            self._busy -= len(taken)
            self._cond.notify_all()
        return taken

    def join(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._busy == 0, timeout)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._run(job)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()


class SoloPool:
    """``-P solo``: runs each job in the worker's main thread, one at a time."""

    size = 1

    def __init__(self, run: Callable[[ClaimedJob], None]) -> None:
        self._run = run

    def start(self) -> None:
        pass

    def free_slots(self) -> int:
        return 1

    def submit(self, job: ClaimedJob) -> None:
        self._run(job)

    def wait_for_slot(self, timeout: float) -> None:
        pass

    def take_unstarted(self) -> list[ClaimedJob]:
        return []

    def join(self, timeout: float) -> bool:
        return True

    def shutdown(self) -> None:
        pass
