"""A keyed job free to run starts as soon as a plain one: at the NOTIFY of its
arrival, and, for a job waiting on a key this worker held, when that job's outcome is
written. Neither waits for a timer: with the worker's periodic looks (the refresh of
the limits, the retry of an idle limited queue) an hour apart, every job here still
ends. How fast is measured in bench/flow.py, not here."""

from __future__ import annotations

import threading
import time
from typing import Any

from pgqueue import App
from pgqueue.worker import gates
from tests.conftest import running_worker, wait_until

HOUR = 3600.0


def test_keyed_jobs_start_without_waiting_for_a_timer(app: App) -> None:
    spans: list[tuple[str, float, float]] = []
    lock = threading.Lock()

    @app.task(bind=True, concurrency_limit=1, name="wakeups.keyed")
    def keyed(self: Any, key: str) -> str:
        started = time.monotonic()
        time.sleep(0.02)
        with lock:
            spans.append((key, started, time.monotonic()))
        return key

    @app.task(name="wakeups.plain")
    def plain() -> int:
        return 1

    with running_worker(app, concurrency=4, pool="threads") as worker:
        worker.gates.retry = HOUR
        gates.REFRESH, refresh = HOUR, gates.REFRESH
        try:
            worker.gates.changed()  # read the limits once more: the next look is in an hour
            assert plain.delay().get(timeout=10) == 1
            # A queue that held no keyed job when the limits were read.
            assert keyed.apply_async(["a"], concurrency_key="a").get(timeout=10) == "a"
            # Five on one key: each starts when the one before it has ended here.
            chain = [keyed.apply_async(["b"], concurrency_key="b") for _ in range(5)]
            assert [r.get(timeout=10) for r in chain] == ["b"] * 5
            # The limited claim found nothing last time: a new keyed job wakes it.
            assert keyed.apply_async(["c"], concurrency_key="c").get(timeout=10) == "c"
        finally:
            gates.REFRESH = refresh
    mutex = sorted((s, e) for k, s, e in spans if k == "b")
    overlaps = [(a, b) for a, b in zip(mutex, mutex[1:], strict=False) if a[1] > b[0]]
    assert not overlaps, "two jobs of key b overlapped"
    wait_until(lambda: len(spans) == 7)
