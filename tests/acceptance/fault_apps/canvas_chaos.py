"""Tasks for the canvas chaos test: every real execution leaves a row in `executions`
(kind, workflow, position, values received, worker pid), so the test can count runs."""

import json
import os
import time

import psycopg
from psycopg import sql

from pgqueue import App, DatabaseUnavailable

app = App("canvas_chaos")
app.conf.update(leader_ttl_seconds=2, maintenance_interval=0.3)
_executions = sql.SQL(
    "INSERT INTO {}.executions (job_id, kind, flow, pos, received, pid) "
    "VALUES (%s, %s, %s, %s, %s, %s)").format(
        sql.Identifier(os.environ.get("PGQUEUE_SCHEMA", "pgqueue")))


# The restart cuts the tasks' own connections too: retry like a real app would (a task
# that failed here would fail its chord, which is right, but not what this test is about).
RETRY = {"max_retries": None, "autoretry_for": (psycopg.OperationalError, DatabaseUnavailable),
         "default_retry_delay": 0.1}


def _record(job_id, kind, flow, pos, received):
    with app.connection() as conn:
        conn.execute(_executions, (job_id, kind, flow, pos, json.dumps(received),
                                   os.getpid()))


@app.task(bind=True, **RETRY)
def member(self, flow, pos, ms):
    time.sleep(ms / 1000)
    _record(self.request.id, "member", flow, pos, None)
    return pos


@app.task(bind=True, **RETRY)
def body(self, values, flow):
    _record(self.request.id, "body", flow, -1, values)
    return len(values)


@app.task(bind=True, **RETRY)
def step(self, previous, flow, pos, ms):
    time.sleep(ms / 1000)
    _record(self.request.id, "step", flow, pos, previous)
    return previous + 1
