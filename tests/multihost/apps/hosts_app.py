"""Tasks for the multi-host tests. Every execution of `touch` leaves a row in `executions`
naming the host (network namespace) it ran on, so a test can count runs per job and host."""

import os
import time

import psycopg
from psycopg import sql

from pgqueue import App
from pgqueue.exceptions import DatabaseUnavailable

app = App("hosts_app")
# A fast leader hand-over and rescuer keep the test short; production defaults are longer.
app.conf.update(leader_ttl_seconds=2, maintenance_interval=0.3)
HOST = os.environ.get("PGQ_TEST_HOST", "?")
_executions = sql.SQL("INSERT INTO {}.executions (job_id, host) VALUES (%s, %s)").format(
    sql.Identifier(os.environ.get("PGQUEUE_SCHEMA", "pgqueue")))


# The task's own connection can be cut too: retry like a real app would.
@app.task(bind=True, max_retries=50, autoretry_for=(psycopg.OperationalError, DatabaseUnavailable),
          default_retry_delay=0.2)
def touch(self, i, ms):
    time.sleep(ms / 1000)
    with app.connection() as conn:
        conn.execute(_executions, (self.request.id, HOST))
    return i
