"""Remote control with pgqueue's roles: a worker login answers, a control login asks;
a reader may read the table answers but not ask the workers."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from pgqueue import App
from tests.conftest import running_worker, wait_until
from tests.integration.ops.helpers import PGQUEUE, ROOT, TASKS, pgqueue, tasks
from tests.login_roles import login_roles, with_group_roles


@pytest.fixture
def logins(pg_dsn: str, schema: str) -> Iterator[dict[str, str]]:
    groups = with_group_roles(pg_dsn, schema)
    with login_roles(pg_dsn) as make:
        yield {"worker": make(groups["worker"]), "control": make(groups["control"]),
               "reader": make(groups["reader"])}


def test_worker_and_control_roles_suffice(logins: dict[str, str], schema: str) -> None:
    env = {**os.environ, "PGQUEUE_DSN": logins["worker"], "PGQUEUE_SCHEMA": schema}
    worker = subprocess.Popen([PGQUEUE, "worker", "-A", TASKS, "-n", "roles@test", "-c", "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              cwd=ROOT, env=env)
    try:
        wait_until(lambda: pgqueue("status", "-t", "5", dsn=logins["control"], schema=schema)
                   .returncode == 0 or worker.poll() is not None, 60, interval=0.5,
                   message="the worker answers the control login")
        assert worker.poll() is None
        grow = pgqueue("control", "pool_grow", "1", "-t", "10", dsn=logins["control"],
                       schema=schema)
        assert grow.returncode == 0, grow.stderr
        assert "pool will grow (now 3 slots)" in grow.stdout
        stats = pgqueue("inspect", "stats", "-j", "-t", "10", dsn=logins["control"],
                        schema=schema)
        assert stats.returncode == 0, stats.stderr
        active = pgqueue("inspect", "active", dsn=logins["reader"], schema=schema)
        assert active.returncode == 0, active.stderr
        refused = pgqueue("inspect", "ping", dsn=logins["reader"], schema=schema)
        assert refused.returncode == 1
        assert f'GRANT "{schema}_control"' in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    finally:
        worker.terminate()
        output: Any = worker.communicate(timeout=30)[0]
    assert "Traceback" not in output, output
    assert "could not reply" not in output, output


def test_migrated_schema_grants_replies_to_workers_only(pg_dsn: str, schema: str,
                                                       logins: dict[str, str]) -> None:
    app = App("r", dsn=logins["worker"], schema=schema, set_as_current=False)
    try:
        from pgqueue.exceptions import PermissionDenied

        with pytest.raises(PermissionDenied):
            app.execute("control_reply_read", {"request_id": 1})
    finally:
        app.close()


def test_a_reader_queries_held_jobs_without_asking_the_workers(
        app: App, logins: dict[str, str], schema: str) -> None:
    """query_task asks the workers holding the jobs which have not started; a reader may
    not ask, and gets the table's answer instead of an error."""
    found = tasks(app)
    reader = App("reader", dsn=logins["reader"], schema=schema, set_as_current=False)
    try:
        with running_worker(app, name="q@test"):
            job = found["block"].delay()
            wait_until(lambda: (app.control.inspect().active() or {}).get("q@test"), 20,
                       message="job started")
            queried = reader.control.inspect(timeout=5).query_task(job.id)
            assert queried is not None
            assert queried["q@test"][job.id][0] == "active"
            found["gate"].set()
    finally:
        found["gate"].set()
        reader.close()
