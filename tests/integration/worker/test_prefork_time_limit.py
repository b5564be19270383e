"""A hard time limit under ``-P processes`` is recorded when the child is killed
(issue 14, point 9), not when the task would have ended.

Before the fix the supervisor killed the child, then waited for its exit sentinel (up to
5 s) before recording the outcome: a sentinel that another process still held open (a
sibling forked at the same moment, or a process the task forked) delayed the outcome by
those 5 s, about the task's own length in the report.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import suppress
from pathlib import Path

import pytest

from pgqueue import App, TimeLimitExceeded
from tests.conftest import running_worker, wait_until

#: Well under the 30 s the jobs sleep (a delayed outcome waited for their end), with slack
#: for a loaded machine.
DEADLINE = 10.0


def test_the_outcome_is_recorded_when_the_child_is_killed(app: App) -> None:
    @app.task(time_limit=1)
    def hard_limited(s: float) -> None:
        time.sleep(s)

    @app.task
    def quick() -> int:
        return 1

    with running_worker(app, pool="processes", concurrency=2) as worker:
        for _ in range(4):  # the report: 3 of 6 runs were late
            assert quick.delay().get(timeout=20) == 1
            sent = time.monotonic()
            result = hard_limited.delay(30)
            wait_until(result.ready, timeout=DEADLINE, message="the time-limit outcome")
            assert time.monotonic() - sent < DEADLINE
            with pytest.raises(TimeLimitExceeded):
                result.get()
        wait_until(lambda: worker.pool.free_slots() == worker.pool.size, timeout=DEADLINE,
                   message="both slots back")


def test_a_process_the_task_forked_delays_neither_the_outcome_nor_the_slot(
        app: App, tmp_path: Path) -> None:
    pids = tmp_path / "grandchildren"

    @app.task(time_limit=1)
    def forks_then_hangs() -> None:
        pid = os.fork()
        if pid == 0:  # holds the child's exit sentinel and pipe open, as a pool would
            time.sleep(30)
            os._exit(0)
        with pids.open("a") as f:
            f.write(f"{pid}\n")
        time.sleep(30)

    @app.task
    def echo(x: int) -> int:
        return x

    try:
        with running_worker(app, pool="processes", concurrency=1) as worker:
            for i in range(2):
                sent = time.monotonic()
                result = forks_then_hangs.delay()
                wait_until(result.ready, timeout=DEADLINE, message="the time-limit outcome")
                assert isinstance(result.result, TimeLimitExceeded)
                wait_until(lambda: worker.pool.free_slots() == 1, timeout=DEADLINE,
                           message="the slot back")
                assert echo.delay(i).get(timeout=DEADLINE) == i
                assert time.monotonic() - sent < 2 * DEADLINE
    finally:
        for line in pids.read_text().split() if pids.exists() else []:
            with suppress(ProcessLookupError):
                os.kill(int(line), signal.SIGKILL)


def test_a_child_that_dies_while_its_fork_lives_on_is_noticed(app: App,
                                                             tmp_path: Path) -> None:
    """Neither EOF nor the sentinel come while the fork holds them: the pid is polled."""
    pids = tmp_path / "grandchildren"

    @app.task(max_retries=0)
    def forks_then_dies() -> None:
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        with pids.open("a") as f:
            f.write(f"{pid}\n")
        os._exit(7)

    @app.task
    def echo(x: int) -> int:
        return x

    try:
        with running_worker(app, pool="processes", concurrency=1):
            result = forks_then_dies.delay()
            wait_until(result.ready, timeout=DEADLINE, message="the lost child noticed")
            assert "exitcode 7" in str(result.result)
            assert echo.delay(1).get(timeout=DEADLINE) == 1
    finally:
        for line in pids.read_text().split() if pids.exists() else []:
            with suppress(ProcessLookupError):
                os.kill(int(line), signal.SIGKILL)
