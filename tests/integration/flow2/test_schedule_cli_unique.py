"""`pgqueue schedule add --options` takes unique_for/unique_states (checked, one line when
bad), and `schedule run-now` sends without taking the schedule's claim."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

PGQUEUE = str(Path(sys.executable).with_name("pgqueue"))
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def cli(pg_dsn: str, schema: str) -> Any:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PGQUEUE_DSN", "DATABASE_URL", "PGQUEUE_SCHEMA")}
        return subprocess.run([PGQUEUE, *args, "--dsn", pg_dsn, "--schema", schema],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)

    return run


def test_add_with_unique_options_and_run_now(cli: Any, db: psycopg.Connection[Any]) -> None:
    added = cli("schedule", "add", "sync", "any.task", "--every", "60", "--options",
                '{"unique_for": 300, "unique_states": "live"}')
    assert added.returncode == 0, added.stderr
    options = db.execute("SELECT options FROM schedules WHERE name = 'sync'").fetchone()
    assert options == ({"unique_for": 300, "unique_states": "live"},)
    for _ in range(2):
        sent = cli("schedule", "run-now", "sync")
        assert sent.returncode == 0, sent.stderr
    keys = [r[0] for r in db.execute("SELECT unique_key FROM jobs").fetchall()]
    assert len(keys) == 2 and all(k.startswith("beat:sync:run-now:") for k in keys)
    assert db.execute("SELECT count(*) FROM unique_claims").fetchone() == (0,)


@pytest.mark.parametrize("options, fragment", [
    ('{"unique_for": -1}', "unique_for must be a number of seconds above 0"),
    ('{"unique_states": ["queud"]}', "did you mean 'queued'"),
    ('{"unique_key": "k"}', "cannot be used on a schedule"),
])
def test_bad_unique_options_are_one_error_line(cli: Any, db: psycopg.Connection[Any],
                                               options: str, fragment: str) -> None:
    run = cli("schedule", "add", "bad", "any.task", "--every", "60", "--options", options)
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], \
        run.stderr
    assert db.execute("SELECT count(*) FROM schedules").fetchone() == (0,)
