"""Measuring: CPU time from /proc, worker processes, and the drain clock.

CPU method. Linux counts each process's user+system time in ``/proc/<pid>/stat`` (all its
threads included), in clock ticks (10 ms). We read it at the start and the end of a
measured window:

* worker CPU: every process of the worker's tree (the process we started, its live
  descendants such as Celery's prefork children, and what its reaped children used);
* server CPU: for Postgres-based systems, every backend connected to the bench database
  except the harness's own connections (tagged ``application_name=bench-harness``); for
  Celery, the ``redis-server`` process, or RabbitMQ's ``beam.smp`` (the Erlang VM).
  Postgres background processes (WAL writer, checkpointer, autovacuum) are left out: they
  are shared with whatever else runs on the server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TICK = 1.0 / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    return raw[raw.rindex(")") + 2:].split()


def process_cpu(pid: int, children: bool = False) -> float:
    """CPU seconds used by ``pid`` (user + system), plus its reaped children's if asked."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks * TICK


def descendants(root: int) -> list[int]:
    """Live descendants of ``root`` (children, grandchildren, ...)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_cpu(roots: Sequence[int]) -> float:
    total = 0.0
    for root in roots:
        total += process_cpu(root, children=True)
        total += sum(process_cpu(pid) for pid in descendants(root))
    return total


class CpuMeter:
    """CPU used by a changing set of processes between :meth:`start` and :meth:`stop`.

    ``pids()`` is asked at every :meth:`sample`; a process first seen after ``start``
    counts from zero (it began inside the window), one that exits before ``stop`` keeps the
    last value sampled.
    """

    def __init__(self, pids: Callable[[], Sequence[int]]) -> None:
        self._pids = pids
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._started = False

    def start(self) -> None:
        self._first = {pid: process_cpu(pid) for pid in self._pids()}
        self._last = dict(self._first)
        self._started = True

    def sample(self) -> None:
        if not self._started:
            return
        for pid in self._pids():
            value = process_cpu(pid)
            self._first.setdefault(pid, 0.0)
            if value > 0:
                self._last[pid] = value

    def stop(self) -> float:
        self.sample()
        return sum(self._last.get(pid, first) - first for pid, first in self._first.items())


class TreeMeter:
    """CPU of worker process trees between :meth:`start` and :meth:`stop`."""

    def __init__(self, roots: Sequence[int]) -> None:
        self.roots = list(roots)
        self._start = 0.0

    def start(self) -> None:
        self._start = tree_cpu(self.roots)

    def sample(self) -> None:
        pass

    def stop(self) -> float:
        return tree_cpu(self.roots) - self._start


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


# -- worker processes ---------------------------------------------------------------------
@dataclass
class Workers:
    """Worker subprocesses the harness started (each in its own session/process group)."""

    commands: list[list[str]]
    env: dict[str, str]
    log_path: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> Workers:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        for argv in self.commands:
            log.write(f"\n$ {' '.join(argv)}\n".encode())
            log.flush()
            self.procs.append(subprocess.Popen(argv, env=self.env, stdout=log, stderr=log,
                                               stdin=subprocess.DEVNULL, start_new_session=True))
        log.close()
        return self

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"worker {' '.join(map(str, proc.args))} exited with "
                                   f"{proc.returncode}; see {self.log_path}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM each worker we started; SIGKILL its process group if it lingers."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()

    def __enter__(self) -> Workers:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# -- the drain clock ----------------------------------------------------------------------
@dataclass
class DrainResult:
    jobs: int
    seconds: float
    worker_cpu: float
    server_cpu: float

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict[str, float]:
        return {
            "rate": self.rate, "jobs": self.jobs, "seconds": self.seconds,
            "worker_cpu_us": self.worker_cpu / self.jobs * 1e6 if self.jobs else float("nan"),
            "server_cpu_us": self.server_cpu / self.jobs * 1e6 if self.jobs else float("nan"),
        }


def observe_drain(
    total: int,
    remaining: Callable[[], int],
    worker: TreeMeter,
    server: CpuMeter,
    check: Callable[[], None],
    timeout: float,
    every: float | None = None,
) -> DrainResult:
    """Time a pre-filled queue of ``total`` jobs emptying.

    The clock starts at the first poll that sees fewer than ``total`` jobs left (so worker
    start-up is not counted) and stops at the first poll that sees none; the rate is the
    jobs left at the start divided by the time between. Polls are frequent while waiting
    for the start and near the end, sparse in between, so the poll itself costs little.
    ``every``: poll every so many seconds instead, sampling ``server`` and calling
    ``check`` at each poll (bench.flow's A/B clock, whose figures were taken so).
    """
    deadline = time.monotonic() + timeout
    while True:
        left = remaining()
        now = time.perf_counter()
        if left < total:
            break
        check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"no job finished within {timeout:.0f}s")
        time.sleep(every or 0.005)
    worker.start()
    server.start()
    started, at_start = now, left
    last_sample = now
    while left > 0:
        if every is None:
            elapsed = time.perf_counter() - started
            done = at_start - left
            rate = done / elapsed if done > 0 and elapsed > 0 else 1000.0
            # A fraction of the expected time left: 5 ms near the end, 200 ms at most.
            time.sleep(min(0.2, max(0.005, 0.25 * left / rate)))
        else:
            time.sleep(every)
        if every is not None or time.perf_counter() - last_sample > 0.5:
            server.sample()
            check()
            last_sample = time.perf_counter()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{left} of {total} jobs still unfinished after {timeout:.0f}s")
        left = remaining()
    seconds = time.perf_counter() - started
    return DrainResult(at_start, seconds, worker.stop(), server.stop())
