"""Helpers of the tests that run apps/pool_gaps.py in real `pgqueue worker` processes
(test_pool_*.py); their ``marks`` and ``gaps_app`` fixtures are in conftest.py."""

from __future__ import annotations

from pathlib import Path

from tests.acceptance.procs import WorkerProcess

APPS = Path(__file__).resolve().parent / "apps"


def start(procs: list[WorkerProcess], pg_dsn: str, schema: str, *args: str) -> WorkerProcess:
    worker = WorkerProcess(pg_dsn, schema, "pool_gaps", *args, apps_dir=APPS)
    procs.append(worker)
    worker.wait_ready(60)
    return worker


def lines(path: Path, prefix: str, job_id: str | None = None) -> list[list[str]]:
    found = [line.split() for line in path.read_text().splitlines()
             if line.startswith(prefix + " ")]
    return [f for f in found if job_id is None or job_id in f]


def hooks_of(marks: Path, job_id: str) -> list[list[str]]:
    """``[name, what, pid, thread]`` of each hook and signal that ran for ``job_id``."""
    return [m[1:2] + m[3:] for m in lines(marks, "hook", job_id)]


def named(marks: Path, job_id: str, name: str) -> list[list[str]]:
    return [h for h in hooks_of(marks, job_id) if h[0] == name]


def job_lines(worker: WorkerProcess, job_id: str) -> list[str]:
    return [line for line in worker.output().splitlines() if job_id in line]


def mark(marks: Path, word: str) -> None:
    """Append ``word`` as a line of the marks file (what a task of pool_gaps waits on)."""
    with marks.open("a") as out:
        out.write(f"{word}\n")
