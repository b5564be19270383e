"""Tasks whose outcome PostgreSQL cannot store as it is (issue 12), shared by the
in-process and the subprocess tests. Every execution appends the job's id to a file, so
a test can tell that nothing ran twice, whatever pool (threads, child processes) ran it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pgqueue import App

#: The limit the poison app sets; the oversized task returns twice as much.
RESULT_MAX_BYTES = 100_000


def _deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


#: name → (what the task does, the error text its FAILURE must contain)
POISON: dict[str, tuple[Callable[[], Any], str]] = {
    "nul_string": (lambda: "a\x00b", "a string or key contains NUL (\\u0000)"),
    "nul_key": (lambda: {"k\x00": 1}, "a string or key contains NUL (\\u0000)"),
    "surrogate": (lambda: "\ud800", "lone surrogate"),
    "deep": (lambda: _deep(1000), "nested deeper than 200 levels"),
    "oversized": (lambda: "x" * (2 * RESULT_MAX_BYTES),
                  f"over the limit of {RESULT_MAX_BYTES:,} bytes (result_max_bytes)"),
    "raises_nul": (lambda: _raise("bad\x00news"), "ValueError: bad\ufffdnews"),
    "raises_surrogate": (lambda: _raise("bad \ud800 news"), "ValueError: bad \ufffd news"),
}


def _raise(message: str) -> None:
    raise ValueError(message)


def define(app: App, executions: Path) -> None:
    """Register ``poison.<name>`` for each case of :data:`POISON`, and ``poison.echo``."""
    app.conf.result_max_bytes = RESULT_MAX_BYTES

    def record(job_id: str) -> None:
        fd = os.open(executions, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, f"{job_id}\n".encode())  # one write with O_APPEND: atomic
        finally:
            os.close(fd)

    for name, (behaviour, _) in POISON.items():
        def run(self: Any, behaviour: Callable[[], Any] = behaviour) -> Any:
            record(self.request.id)
            return behaviour()

        app.task(name=f"poison.{name}", bind=True, max_retries=0)(run)

    @app.task(name="poison.echo", bind=True)
    def echo(self: Any, i: int) -> int:
        record(self.request.id)
        return i


def executions_by_job(executions: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    if executions.exists():
        for line in executions.read_text().split():
            counts[line] = counts.get(line, 0) + 1
    return counts
