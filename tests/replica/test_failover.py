"""Failover: a synchronous standby promoted in the middle of a run, with producers and a
real worker on a multi-host DSN (docs/deploying.md, "Read replicas and failover")."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgqueue import App
from pgqueue.db import migrations
from tests.acceptance.procs import WorkerProcess
from tests.conftest import wait_until
from tests.hostile_tasks import executions
from tests.replica.cluster import replica_pair

APPS = Path(__file__).resolve().parent / "apps"
SCHEMA = "pgq_failover"
JOBS = 400
CONCURRENCY = 8


class Producer(threading.Thread):
    """Sends `replica.recorded` jobs one by one, as a web app would, noting each id whose
    send returned and when each send failed; it never rebuilds its app."""

    def __init__(self, app: App, count: int) -> None:
        super().__init__(daemon=True)
        self.app = app
        self.count = count
        self.sent: list[tuple[float, float, str]] = []  # (when sent, when it returned, id)
        self.failures: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while len(self.sent) < self.count and not self.stop.is_set():
            began = time.monotonic()
            try:
                result = self.app.send_task("replica.recorded", (i, 20))
            except Exception as error:  # the primary is gone: try again, as a caller would
                self.failures.append((time.monotonic(), f"{type(error).__name__}: {error}"))
                time.sleep(0.05)
                continue
            self.sent.append((began, time.monotonic(), result.id))
            i += 1
            time.sleep(0.01)


def rows(dsn: str, query: sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        return conn.execute(query, params).fetchall()


def test_promoting_the_synchronous_standby_loses_no_sent_job_and_reruns_no_finished_one(
) -> None:
    with replica_pair(synchronous=True) as pair:
        dsn = pair.multi_host_dsn
        migrations.migrate(dsn, SCHEMA)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE TABLE {}.executions (job_id uuid NOT NULL, task "
                                 "text, pid int, at timestamptz DEFAULT clock_timestamp(), "
                                 "began float8)"
                                 ).format(sql.Identifier(SCHEMA)))
        worker = WorkerProcess(dsn, SCHEMA, "replica_app", "-c", str(CONCURRENCY),
                               apps_dir=APPS)
        app = App("producer", dsn=dsn, schema=SCHEMA, set_as_current=False)
        producer = Producer(app, JOBS)
        try:
            worker.wait_ready()
            producer.start()
            wait_until(lambda: len(producer.sent) >= JOBS // 4, 60, message="a first batch")
            assert app.send_task("replica.add", (1, 2)).get(timeout=20) == 3  # LISTENs now
            finished = {r[0] for r in rows(pair.primary.dsn, sql.SQL(
                "SELECT id::text FROM {}.results").format(sql.Identifier(SCHEMA)))}
            assert finished, "some jobs finished before the failover"

            stopped = time.monotonic()
            pair.primary.stop("immediate")
            pair.standby.promote()
            promoted, promoted_epoch = time.monotonic(), time.time()
            new_primary = pair.standby.dsn

            producer.join(60)
            assert not producer.is_alive(), (
                f"the producer sent {len(producer.sent)} of {JOBS}; failures since promotion:"
                f" {[f for at, f in producer.failures if at > promoted][-3:]}")
            sent_ids = [job_id for _, _, job_id in producer.sent]
            first_after = min(at for _, at, _ in producer.sent if at > promoted)
            state_sql = sql.SQL("SELECT id::text, state FROM {}.results WHERE id = ANY(%s)"
                                ).format(sql.Identifier(SCHEMA))

            def all_done() -> bool:
                return len(rows(new_primary, state_sql, (sent_ids,))) == len(sent_ids)

            wait_until(all_done, 60, interval=0.2, message="every sent job finished")
            final = dict(rows(new_primary, state_sql, (sent_ids,)))
            assert set(final.values()) == {"SUCCESS"}, final
            # The app's result listener moved to the new primary by itself too.
            assert app.send_task("replica.add", (2, 2)).get(timeout=20, interval=30) == 4

            with psycopg.connect(new_primary, autocommit=True) as conn:
                runs = executions(conn, SCHEMA)
                resumed = conn.execute(sql.SQL(
                    "SELECT min(began) FROM {}.executions WHERE began > %s").format(
                    sql.Identifier(SCHEMA)),
                    (promoted_epoch,)).fetchone()
            assert all(runs.get(job_id) for job_id in sent_ids)
            repeated = {job_id for job_id, n in runs.items() if n > 1}
            assert not repeated & finished, "a job finished before the failover ran again"
            # Only jobs in flight at the failover ran twice, as after a rescue: sent before
            # the standby was promoted, not finished before the primary went down. Two ways:
            # a claim commits without waiting for the standby, so a claim lost with the
            # primary puts its job back in the queue, as if its worker had died; and a send
            # whose commit reached the standby but whose answer was lost is sent again on
            # the new primary, where the job may have finished already. A job sent after
            # the promotion ran once.
            sent_at = {job_id: began for began, _, job_id in producer.sent}
            assert all(sent_at[job_id] < promoted for job_id in repeated), repeated
            assert all(runs[job_id] == 1 for job_id in sent_ids if sent_at[job_id] > promoted)
            assert worker.proc.poll() is None, worker.output()
            assert "reconnected" in worker.output(), worker.output()
            assert resumed and resumed[0] is not None, "the worker ran nothing after"
            worker_resumed = float(resumed[0]) - promoted_epoch
            print(f"\nfailover: {len(sent_ids)} jobs sent, promotion took "
                  f"{promoted - stopped:.2f}s, producer sending again "
                  f"{first_after - promoted:.2f}s after promotion "
                  f"({len(producer.failures)} failed sends), worker running jobs again "
                  f"{worker_resumed:.2f}s after promotion, {len(repeated)} jobs ran twice "
                  f"(in flight), {len(finished)} finished before the stop")
            print("ran twice (send began, returned; s from the stop):", [
                (round(b - stopped, 2), round(r - stopped, 2)) for b, r, job_id in producer.sent
                if job_id in repeated])
            print("\n".join(line for line in worker.output().splitlines()
                            if "reconnected" in line or "lost" in line))
        finally:
            producer.stop.set()
            app.close()
            worker.stop()
