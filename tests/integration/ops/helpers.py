"""What the ops tests share: the `pgqueue` command run for real, and a task app."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from pgqueue import App

PGQUEUE = str(Path(sys.executable).with_name("pgqueue"))
ROOT = Path(__file__).resolve().parents[3]
TASKS = "tests.acceptance.apps.core_app"


def pgqueue(*args: str, dsn: str, schema: str,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env.update(PGQUEUE_DSN=dsn, PGQUEUE_SCHEMA=schema)
    return subprocess.run([PGQUEUE, *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=timeout)


def tasks(app: App) -> dict[str, Any]:
    """Tasks for the tests: add, and block (runs until ``gate`` is set)."""
    gate = threading.Event()

    @app.task(name="ops.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="ops.block")
    def block(seconds: float = 30) -> str:
        gate.wait(seconds)
        return "done"

    @app.task(name="ops.sleep")
    def sleep(seconds: float) -> str:
        import time

        time.sleep(seconds)
        return "slept"

    return {"add": add, "block": block, "sleep": sleep, "gate": gate}


def replies(found: list[dict[str, Any]] | None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for reply in found or []:
        merged.update(reply)
    return merged
