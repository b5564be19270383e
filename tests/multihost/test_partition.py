"""Workers on several hosts: four `pgqueue worker` processes, each in its own network
namespace, against a PostgreSQL server on a private bridge (tests/multihost/netns.py).

One host's link is cut mid-run (link down on the bridge side: no FIN, its packets simply
stop): its jobs are rescued after the lease, its late finishes are fenced, it reconnects by
itself once the link returns. A half-open connection (the host's outgoing packets dropped)
is noticed within the bound set by the DSN's keepalives and ``tcp_user_timeout``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgqueue import App
from pgqueue.db import migrations
from tests.conftest import wait_until
from tests.multihost.netns import Lab, NetnsWorker, lab_or_skip

pytestmark = pytest.mark.acceptance

SCHEMA = "pgqueue"
LEASE = 5.0  # heartbeats every 1.7 s: slack for a loaded CI machine
# What docs/deploying.md recommends for workers on other machines: a dead peer is found
# within ~5 s whether the connection is idle (keepalives) or has unacknowledged data
# (tcp_user_timeout, milliseconds).
WORKER_DSN_PARAMS = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                     "keepalives_count": 2, "tcp_user_timeout": 5000}


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    built = lab_or_skip(getattr(request, "param", 4))
    try:
        yield built
    finally:
        built.close()


def _prepare(lab: Lab) -> None:
    migrations.migrate(lab.dsn(), SCHEMA)
    with psycopg.connect(lab.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL(
            "CREATE TABLE {}.executions (job_id uuid NOT NULL, host text NOT NULL, "
            "at timestamptz NOT NULL DEFAULT clock_timestamp())").format(sql.Identifier(SCHEMA)))


def _query(lab: Lab, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(lab.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(SCHEMA)))
        return conn.execute(query.encode(), params).fetchall()


def _one(lab: Lab, query: str, *params: Any) -> Any:
    return _query(lab, query, *params)[0][0]


def _start_workers(lab: Lab, hosts: list[Any], *args: str) -> list[NetnsWorker]:
    dsn = lab.dsn(**WORKER_DSN_PARAMS)
    procs = [NetnsWorker(h, dsn, SCHEMA, "hosts_app", "--lease", str(LEASE), *args)
             for h in hosts]
    return procs


def test_cut_host_is_rescued_fenced_and_comes_back(lab: Lab) -> None:
    _prepare(lab)
    producer = App("producer", dsn=lab.dsn(), schema=SCHEMA, set_as_current=False)
    first_wave, second_wave = 3000, 1000
    producer.send_many("hosts_app.touch", [((i, 30), {}) for i in range(first_wave)])
    procs = _start_workers(lab, lab.hosts, "-c", "4")
    victim = lab.hosts[0]
    try:
        for p in procs:
            p.wait_ready()
        done = lambda: _one(lab, "SELECT count(*) FROM results")  # noqa: E731
        held = lambda: _one(  # noqa: E731
            lab, "SELECT count(*) FROM jobs WHERE worker LIKE %s", f"{victim.name}@%")
        # Cut while the victim holds jobs, so there is something to rescue.
        wait_until(lambda: done() >= 300 and held() > 0, timeout=60, message="a busy run")
        victim.cut()
        cut_at = time.monotonic()
        wait_until(lambda: held() == 0, timeout=60, message="the cut host's jobs rescued")
        rescue_seconds = time.monotonic() - cut_at
        # Keep the link down past the workers' tcp_user_timeout: its connections are dead
        # and it must build new ones by itself.
        wait_until(lambda: time.monotonic() - cut_at > 8, timeout=20, interval=0.1,
                   message="the cut held")
        victim.restore()
        restored_at = time.monotonic()
        back_at = _one(lab, "SELECT clock_timestamp()")
        producer.send_many("hosts_app.touch",
                           [((first_wave + i, 30), {}) for i in range(second_wave)])
        wait_until(lambda: _one(lab, "SELECT count(*) FROM executions WHERE host = %s AND at > %s",
                                victim.name, back_at) > 0,
                   timeout=60, message="the cut host working again")
        reconnect_seconds = time.monotonic() - restored_at
        total = first_wave + second_wave
        wait_until(lambda: done() >= total, timeout=120, message="every job finished")
        print(f"\nrescue after the cut: {rescue_seconds:.1f} s (lease {LEASE} s); "
              f"cut host back at work {reconnect_seconds:.1f} s after the link returned")
        fenced = sum(len(re.findall(r"was no longer ours|Dropping late outcome", p.output()))
                     for p in procs)
        print(f"late outcomes fenced on the cut host: {fenced}")
    finally:
        for p in procs:
            p.stop()
        producer.close()

    assert _one(lab, "SELECT count(*) FROM jobs") == 0
    states = dict(_query(lab, "SELECT state, count(*) FROM results GROUP BY state"))
    assert states == {"SUCCESS": total}, states
    # Jobs that ran more than once: each was run by the cut host (and rescued).
    twice = _query(lab, "SELECT job_id, array_agg(host ORDER BY at) FROM executions "
                        "GROUP BY job_id HAVING count(*) > 1")
    assert all(victim.name in hosts for _, hosts in twice), twice
    # Fencing: a rescued job's result is the rescuer's, never the cut host's late one.
    late = _query(lab, "SELECT r.id, r.worker FROM results r JOIN executions e ON e.job_id = r.id "
                       "WHERE e.host <> %s AND r.worker LIKE %s", victim.name, f"{victim.name}@%")
    assert late == [], late
    assert fenced > 0 or not twice, "rescued jobs but no late outcome was fenced"
    print(f"jobs run twice: {len(twice)}")


@pytest.mark.parametrize("lab", [1], indirect=True)
def test_half_open_connection_is_detected_and_the_worker_recovers(lab: Lab) -> None:
    _prepare(lab)
    producer = App("producer", dsn=lab.dsn(), schema=SCHEMA, set_as_current=False)
    host = lab.hosts[0]
    (worker,) = _start_workers(lab, [host], "-c", "2")
    try:
        worker.wait_ready()
        producer.send_many("hosts_app.touch", [((i, 10), {}) for i in range(20)])
        wait_until(lambda: _one(lab, "SELECT count(*) FROM results") == 20, timeout=60,
                   message="a first batch")
        lost = lambda: worker.output().count("database connection lost")  # noqa: E731
        before = lost()
        # Half-open: the server still believes in the connection and no FIN or RST comes;
        # only the host's own timers (keepalives, tcp_user_timeout) can tell.
        host.drop_outgoing()
        dropped_at = time.monotonic()
        wait_until(lambda: lost() > before, timeout=60, interval=0.05,
                   message=f"the half-open connection noticed:\n{worker.output()}")
        detection = time.monotonic() - dropped_at
        host.stop_dropping()
        healed_at = time.monotonic()
        wait_until(lambda: "reconnected after" in worker.output(), timeout=60,
                   message=f"the worker reconnected:\n{worker.output()}")
        producer.send_many("hosts_app.touch", [((100 + i, 10), {}) for i in range(20)])
        wait_until(lambda: _one(lab, "SELECT count(*) FROM results") == 40, timeout=60,
                   message="jobs after the link healed")
        recovery = time.monotonic() - healed_at
        print("\n" + "\n".join(line for line in worker.output().splitlines()
                               if "connection lost" in line or "reconnected" in line))
        print(f"\nhalf-open connection noticed after {detection:.1f} s "
              f"(DSN {WORKER_DSN_PARAMS}); work again {recovery:.1f} s after the link healed")
    finally:
        worker.stop()
        producer.close()
    # Bound: tcp_user_timeout (5 s) on a busy connection, or keepalives_idle + count *
    # interval (9 s) on an idle one, plus a poll interval and a loaded machine's slack.
    assert detection < 20, detection
    assert _query(lab, "SELECT DISTINCT state FROM results") == [("SUCCESS",)]
