"""Issue 12, point 1 with real `pgqueue worker` processes in every pool: a task whose
outcome PostgreSQL cannot store as it is (NUL, lone surrogate, 1,000-deep, oversized,
an exception message with NUL or a surrogate) ends FAILURE with a clear error, and the
20 jobs behind it finish, each exactly once, on a worker that goes on claiming."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgqueue import App
from tests.acceptance.procs import WorkerProcess, workers
from tests.poison_tasks import POISON, executions_by_job

pytestmark = pytest.mark.acceptance


@pytest.mark.parametrize("pool", ["threads", "processes", "asyncio", "solo"])
def test_poison_outcomes_do_not_wedge_a_worker(pg_dsn: str, schema: str, app: App,
                                               tmp_path: Path, pool: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    executions = tmp_path / "executions"
    monkeypatch.setenv("POISON_EXECUTIONS", str(executions))
    with workers() as procs:
        worker = WorkerProcess(pg_dsn, schema, "poison", "-P", pool,
                               "-c", "1" if pool == "solo" else "4")
        procs.append(worker)
        worker.wait_ready()
        poison = {name: app.send_task(f"poison.{name}") for name in POISON}
        normal = [app.send_task("poison.echo", [i]) for i in range(20)]
        assert [r.get(timeout=60) for r in normal] == list(range(20))
        errors = {}
        for name, result in poison.items():
            with pytest.raises(ValueError) as raised:
                result.get(timeout=60)
            errors[name] = str(raised.value)
        assert app.send_task("poison.echo", [99]).get(timeout=60) == 99
        assert worker.proc.poll() is None
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        output = worker.output()
    assert "database connection lost" not in output
    assert "could not be stored" not in output  # the workers' checks caught every one
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
        rows: dict[str, Any] = {str(r[0]): r[1:] for r in conn.execute(
            "SELECT id, state, error FROM results").fetchall()}
    for name, (_, expected) in POISON.items():
        state, error = rows[poison[name].id]
        assert state == "FAILURE" and expected in error, (name, error)
        assert expected.removeprefix("ValueError: ") in errors[name]
    assert sorted(rows[r.id][0] for r in normal) == ["SUCCESS"] * 20
    assert set(executions_by_job(executions).values()) == {1}
    assert len(executions_by_job(executions)) == len(POISON) + 21
