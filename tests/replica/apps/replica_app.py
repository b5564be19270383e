"""Tasks for the replica and failover tests. Every run of `recorded` leaves a row in
`executions` first, so a test can count the runs of each job across a failover."""

import os
import time

import psycopg
from psycopg import sql

from pgqueue import App

app = App("replica_app")
# A fast leader hand-over, rescuer and lease keep the test short; the defaults are longer.
app.conf.update(leader_ttl_seconds=2, maintenance_interval=0.3, worker_lease_seconds=5)
_executions = sql.SQL("INSERT INTO {}.executions (job_id, began) VALUES (%s, %s)").format(
    sql.Identifier(os.environ.get("PGQUEUE_SCHEMA", "pgqueue")))


@app.task(name="replica.add")
def add(x, y):
    return x + y


@app.task(name="replica.recorded", bind=True)
def recorded(self, i, ms=0):
    # The task's own connection goes down with the primary too: it reconnects, like an
    # app would, to whichever server accepts writes (the DSN is multi-host).
    began = time.time()  # when this run started, however long the record takes
    deadline = time.monotonic() + 60
    while True:
        try:
            with psycopg.connect(app.dsn, autocommit=True, connect_timeout=2) as conn:
                conn.execute(_executions, (self.request.id, began))
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    time.sleep(ms / 1000)
    return i


@app.task(name="replica.fails_first")
def fails_first(marker):
    """Fails on its first run (leaving ``marker``), succeeds on the next."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise ValueError("first run fails")
    return "second run"
