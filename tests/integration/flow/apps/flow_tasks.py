"""Tasks for the flow-control tests. Each run of `span` leaves a row in `spans` with the
database clock at its start and its end, so that a test can count how many ran at once."""

import os
import time

from psycopg import sql

from pgqueue import App

app = App("flow")
app.conf.update(leader_ttl_seconds=2, maintenance_interval=0.3,
                queue_concurrency={"narrow": 3})
_span = sql.SQL(
    "INSERT INTO {}.spans (job_id, key, started, ended, pid)"
    " VALUES (%s, %s, %s, clock_timestamp(), %s)").format(
    sql.Identifier(os.environ.get("PGQUEUE_SCHEMA", "pgqueue")))
_now = sql.SQL("SELECT clock_timestamp()")


def _record(job_id, key, ms):
    with app.connection() as conn:
        started = conn.execute(_now).fetchone()[0]
        time.sleep(ms / 1000)
        conn.execute(_span, (job_id, key, started, os.getpid()))


@app.task(bind=True)
def span(self, key, ms):
    _record(self.request.id, key, ms)


@app.task(bind=True, concurrency_limit=1)
def keyed(self, key, ms):
    _record(self.request.id, key, ms)


@app.task(rate_limit="20/s")
def limited(i):
    return i
