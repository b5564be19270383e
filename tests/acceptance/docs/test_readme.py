"""The README's quick start, run as written: migrate, the tasks module, a worker, a call."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.procs import pgqueue_command
from tests.pgserver import drop_schema

pytestmark = pytest.mark.acceptance

README = Path(__file__).resolve().parents[3] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_quick_start_works_as_pasted(pg_dsn: str, tmp_path: Path) -> None:
    tasks = next(b for b in _blocks("python") if 'app = App("proj")' in b)
    commands = next(b for b in _blocks("bash") if "pgqueue worker -A tasks &" in b)
    (tmp_path / "tasks.py").write_text(tasks)
    bindir = str(Path(sys.executable).parent)
    # The README's schema is "pgqueue"; the test uses its own so it can run in parallel.
    schema = f"readme_{os.getpid()}"
    env = {**os.environ, "PGQUEUE_DSN": pg_dsn, "PGQUEUE_SCHEMA": schema,
           "PATH": bindir + os.pathsep + os.environ["PATH"]}
    migrate = subprocess.run([*pgqueue_command(), "migrate"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert migrate.returncode == 0, migrate.stderr
    script = f"{commands}\nstatus=$?\nkill %1\nwait\nexit $status\n"
    run = subprocess.run(["bash", "-e", "-c", script], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    try:
        assert run.returncode == 0, run.stderr[-3000:]
        assert run.stdout.strip().splitlines()[-1] == "5"
    finally:
        drop_schema(pg_dsn, schema)
