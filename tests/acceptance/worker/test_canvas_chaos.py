"""Workflows under faults with real `pgqueue worker` processes (issue 15): 100 chords of
50 members and 100 chains of 10 steps on 3 workers, one SIGKILLed every 2 seconds and
PostgreSQL restarted once. Every chord body runs once with the full ordered list, every
chain reaches its last step once, nothing is left behind, and nothing runs twice unless
the worker running it died."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgqueue import App, chain, chord, signature
from pgqueue.db import migrations
from tests.acceptance.procs import PrivateCluster, WorkerProcess, workers
from tests.conftest import wait_until

pytestmark = pytest.mark.acceptance

CHORDS, MEMBERS, CHAINS, STEPS = 100, 50, 100, 10


def _rows(dsn: str, schema: str, query: str, *params: Any) -> list[Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        return conn.execute(query.encode(), params).fetchall()


def test_chords_and_chains_survive_sigkills_and_a_postgres_restart(tmp_path: Path) -> None:
    cluster = PrivateCluster()
    try:
        cluster.start()
        dsn, schema = cluster.dsn, "pgqueue"
        migrations.migrate(dsn, schema)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL(
                "CREATE TABLE {}.executions (job_id uuid, kind text, flow int, pos int, "
                "received jsonb, pid int, at timestamptz DEFAULT clock_timestamp())")
                .format(sql.Identifier(schema)))
        app = App("chaos", dsn=dsn, schema=schema, set_as_current=False)
        rnd = random.Random(15)
        chords = [chord([signature("canvas_chaos.member", (c, i, rnd.randint(5, 40)), app=app)
                         for i in range(MEMBERS)],
                        signature("canvas_chaos.body", kwargs={"flow": c}, app=app)
                        ).apply_async() for c in range(CHORDS)]
        chains = [chain(*(signature("canvas_chaos.step",
                                    ((0,) if s == 0 else ()) + (c, s, rnd.randint(5, 40)),
                                    app=app) for s in range(STEPS))).apply_async()
                  for c in range(CHAINS)]
        assert len(chords) == CHORDS and len(chains) == CHAINS
        left = lambda: _rows(dsn, schema, "SELECT (SELECT count(*) FROM jobs) "  # noqa: E731
                             "+ (SELECT count(*) FROM canvas_steps)")[0][0]
        killed: set[int] = set()
        with workers() as procs:
            def start() -> WorkerProcess:
                # 4 s: a loaded machine that delays a live worker's beats (every lease/3)
                # must not get its jobs rescued and run twice
                w = WorkerProcess(dsn, schema, "canvas_chaos", "-c", "4", "--lease", "4")
                procs.append(w)
                return w

            live = [start() for _ in range(3)]
            for w in live:
                w.wait_ready()
            total = left()
            kills, restarted = 0, False
            while left() > total // 5 and kills < 10:
                time.sleep(2.0)  # one SIGKILL every two seconds
                victim = live.pop(rnd.randrange(len(live)))
                victim.signal(signal.SIGKILL)
                victim.wait()
                killed.add(victim.pid)
                kills += 1
                live.append(start())
                if kills == 3 and not restarted:
                    cluster.restart()
                    restarted = True
            assert kills >= 3 and restarted, "the run ended before the faults were injected"
            wait_until(lambda: left() == 0, timeout=240, interval=0.5,
                       message="every workflow finished")
        app.close()
        failed = _rows(dsn, schema, "SELECT task, state, error FROM results "
                                    "WHERE state <> 'SUCCESS' LIMIT 5")
        assert failed == [], failed
        # Every chord body ran, with the full ordered list; every chain's last step ran.
        bodies = _rows(dsn, schema, "SELECT flow, received, pid FROM executions "
                                    "WHERE kind = 'body' ORDER BY flow, at")
        assert sorted({f for f, _, _ in bodies}) == list(range(CHORDS))
        for flow, received, _ in bodies:
            assert received == list(range(MEMBERS)), flow
        last = _rows(dsn, schema, "SELECT flow, received FROM executions "
                                  "WHERE kind = 'step' AND pos = %s", STEPS - 1)
        assert sorted({f for f, _ in last}) == list(range(CHAINS))
        assert all(received == STEPS - 1 for _, received in last)
        # Final states: all SUCCESS, nothing waiting, no edge left.
        states = dict(_rows(dsn, schema, "SELECT state, count(*) FROM results GROUP BY 1"))
        assert states == {"SUCCESS": CHORDS * (MEMBERS + 1) + CHAINS * STEPS}, states
        assert _rows(dsn, schema, "SELECT count(*) FROM canvas_edges") == [(0,)]
        # Nothing ran twice unless the worker running it died (at-least-once, no more).
        repeats = _rows(dsn, schema, "SELECT job_id, array_agg(pid ORDER BY at) "
                                     "FROM executions GROUP BY job_id HAVING count(*) > 1")
        for job_id, pids in repeats:
            assert set(pids[:-1]) <= killed, (job_id, pids)
        print(f"{kills} SIGKILLs, 1 restart, {len(repeats)} jobs run again after a kill")
    finally:
        cluster.destroy()
