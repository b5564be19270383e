"""Real `pgqueue` processes as LOGIN roles that hold only pgqueue's group roles: a
producer, a worker and beat each with its own grant (issue 12, deliverable 5)."""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.acceptance.procs import WorkerProcess, pgqueue_command, workers
from tests.conftest import wait_until
from tests.login_roles import login_roles, with_group_roles

pytestmark = pytest.mark.acceptance

APP = textwrap.dedent("""
    from pgqueue import App

    app = App("secapp")
    app.conf.beat_schedule = {"tick": {"task": "secapp.tick", "schedule": 0.5}}

    @app.task(name="secapp.double")
    def double(n):
        return 2 * n

    @app.task(name="secapp.tick")
    def tick():
        return "tick"
""")


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "secapp.py").write_text(APP)
    return tmp_path


@pytest.fixture
def login(pg_dsn: str, schema: str) -> Iterator[Callable[..., str]]:
    groups = with_group_roles(pg_dsn, schema)
    with login_roles(pg_dsn) as make:
        yield lambda *kinds: make(*(groups[k] for k in kinds))


def _env(dsn: str, schema: str, app_dir: Path) -> dict[str, str]:
    return {**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": schema,
            "PYTHONPATH": os.pathsep.join([str(app_dir), os.environ.get("PYTHONPATH", "")])}


@contextmanager
def beat_process(dsn: str, schema: str, app_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """A `pgqueue beat` subprocess, its output in app_dir/beat.log; killed at the end."""
    with (app_dir / "beat.log").open("w") as log:
        proc = subprocess.Popen([*pgqueue_command(), "beat", "-A", "secapp"], text=True,
                                env=_env(dsn, schema, app_dir), stdout=log,
                                stderr=subprocess.STDOUT, cwd=app_dir)
        try:
            yield proc
        finally:
            proc.kill()
            proc.wait(10)


def beat_log(app_dir: Path) -> str:
    return (app_dir / "beat.log").read_text()


def pgqueue(dsn: str, schema: str, app_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*pgqueue_command(), *args], env=_env(dsn, schema, app_dir),
                          capture_output=True, text=True, timeout=60)


def test_producer_worker_and_beat_run_with_only_their_group_roles(
    pg_dsn: str, schema: str, app_dir: Path, login: Callable[..., str]
) -> None:
    producer = login("producer")
    with workers() as started, beat_process(login("worker"), schema, app_dir) as beat:
        started.append(WorkerProcess(login("worker"), schema, "secapp", "-c", "2",
                                     apps_dir=app_dir))
        started[0].wait_ready()

        sent = pgqueue(producer, schema, app_dir, "call", "secapp.double", "-a", "[21]")
        assert sent.returncode == 0, sent.stderr
        job_id = sent.stdout.strip()
        done = pgqueue(producer, schema, app_dir, "result", job_id, "--wait", "20")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [f"{job_id}  SUCCESS", "42"]

        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            wait_until(lambda: conn.execute(
                "SELECT count(*) FROM results WHERE task = 'secapp.tick' "
                "AND state = 'SUCCESS'").fetchone()[0] >= 2,  # type: ignore[index]
                timeout=30, message="beat's fires run by the worker")
            assert beat.poll() is None, beat_log(app_dir)
        with psycopg.connect(producer, autocommit=True) as conn, \
                pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("SELECT args FROM {}.results").format(sql.Identifier(schema)))
        assert "Traceback" not in started[0].output(), started[0].output()
        assert "Traceback" not in beat_log(app_dir), beat_log(app_dir)


def test_commands_of_a_role_without_grants_fail_in_one_line(
    pg_dsn: str, schema: str, app_dir: Path, login: Callable[..., str]
) -> None:
    nobody = login()
    user = psycopg.conninfo.conninfo_to_dict(nobody)["user"]
    for args, kind in ((["call", "secapp.double", "-a", "[1]"], "producer"),
                       (["worker", "-A", "secapp"], "worker"),
                       (["beat", "-A", "secapp"], "worker"),
                       (["purge", "-f"], "control"),
                       (["inspect"], "reader")):
        run = pgqueue(nobody, schema, app_dir, *args)
        assert run.returncode == 1, (args, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1, (args, run.stderr)
        assert lines[0].startswith("Error: ")
        assert f'GRANT "{schema}_{kind}" TO "{user}"' in lines[0], (args, lines[0])
