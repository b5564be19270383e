"""Limits across a Postgres restart: real `pgqueue worker` processes on a private
server (tests.acceptance.procs.PrivateCluster, never the shared one), restarted in the
middle of a rate-limited and a concurrency-limited run. The rate never goes over its
limit in any window, no concurrency slot is lost (the queue runs 3 at once again after
the restart), and every job ends exactly once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgqueue import App
from pgqueue.db import migrations
from tests.acceptance.procs import PrivateCluster, WorkerProcess, workers
from tests.conftest import wait_until
from tests.integration.flow.test_fleet import most_at_once

pytestmark = pytest.mark.acceptance

APPS = Path(__file__).resolve().parent / "apps"
SCHEMA = "pgqueue"


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    server = PrivateCluster()
    try:
        server.start()
        migrations.migrate(server.dsn, SCHEMA)
        yield server
    finally:
        server.destroy()


def _rows(dsn: str, query: str) -> list[tuple[Any, ...]]:
    """Rows of ``query`` (in the test's schema); none while the server is down."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(SCHEMA)))
            return conn.execute(query.encode()).fetchall()
    except psycopg.OperationalError:
        return []


def _spans(path: Path, kind: str) -> list[tuple[str, float, float]]:
    if not path.exists():
        return []
    return [(job, float(start), float(end))
            for k, job, start, end, _ in (line.split() for line in path.read_text().splitlines())
            if k == kind]


def worst_window(starts: list[float], seconds: float = 1.0) -> int:
    """The most starts in any window of ``seconds``."""
    starts = sorted(starts)
    worst = j = 0
    for i, t in enumerate(starts):
        while j < len(starts) and starts[j] < t + seconds:
            j += 1
        worst = max(worst, j - i)
    return worst


def test_limits_hold_and_come_back_across_a_postgres_restart(
        cluster: PrivateCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spans_file = tmp_path / "spans.txt"
    monkeypatch.setenv("RESTART_SPANS", str(spans_file))
    app = App("restart_flow", dsn=cluster.dsn, schema=SCHEMA, set_as_current=False)
    limited, narrow = 200, 60
    try:
        app.send_many("restart_tasks.limited", [[i] for i in range(limited)])
        app.send_many("restart_tasks.span", [[200]] * narrow, queue="narrow")
        with workers() as procs:
            for _ in range(2):
                procs.append(WorkerProcess(cluster.dsn, SCHEMA, "restart_tasks", "-c", "4",
                                           "-Q", "default,narrow", apps_dir=APPS))
            for worker in procs:
                worker.wait_ready(60)
            wait_until(lambda: len(_spans(spans_file, "limited")) >= 40
                       and len(_spans(spans_file, "narrow")) >= 6, timeout=60,
                       message="both limited runs under way")
            cluster.restart()
            restarted = time.time()
            wait_until(lambda: _rows(cluster.dsn, "SELECT count(*) FROM results")
                       == [(limited + narrow,)], timeout=120, interval=0.2,
                       message="every job ended after the restart")
            for worker in procs:
                assert worker.proc.poll() is None, f"a worker died:\n{worker.output()}"
        states = dict(_rows(cluster.dsn, "SELECT state, count(*) FROM results GROUP BY 1"))
        assert states == {"SUCCESS": limited + narrow}, states
        assert _rows(cluster.dsn, "SELECT count(*) FROM jobs") == [(0,)]
        # Exactly once: one execution per job, no job ran twice.
        for kind, total in (("limited", limited), ("narrow", narrow)):
            ran = [job for job, _, _ in _spans(spans_file, kind)]
            assert len(ran) == total and len(set(ran)) == total, (kind, len(ran),
                                                                  len(set(ran)))
        # The claim is the start a limit counts (results.started_at, as in test_fleet).
        starts = [row[0] for row in _rows(cluster.dsn,
            "SELECT extract(epoch FROM started_at)::float8 FROM results"
            " WHERE task = 'restart_tasks.limited'")]
        worst = worst_window(starts)
        around = worst_window([s for s in starts if abs(s - restarted) < 5])
        assert worst <= 21, f"a 1-second window held {worst} starts ({around} near the restart)"
        spans = [(s, e) for _, s, e in _spans(spans_file, "narrow")]
        assert most_at_once(spans) <= 3, "more than 3 narrow jobs ran at once"
        after = [(s, e) for s, e in spans if s > restarted]
        assert len(after) >= 6, "the narrow queue's run did not go on after the restart"
        assert most_at_once(after) == 3, "a concurrency slot was lost in the restart"
    finally:
        app.close()
