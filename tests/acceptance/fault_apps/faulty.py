"""Tasks for the fault-injection tests. Every real execution of `work` leaves a row in
`executions`, so a test can count how often each job ran."""

import os
import time

import psycopg
from psycopg import sql

from pgqueue import App

app = App("faulty")
# Short leases and a fast rescuer keep fault tests quick; production defaults are longer.
app.conf.update(leader_ttl_seconds=2, maintenance_interval=0.3)
_executions = sql.SQL("INSERT INTO {}.executions (job_id, i, pid) VALUES (%s, %s, %s)").format(
    sql.Identifier(os.environ.get("PGQUEUE_SCHEMA", "pgqueue")))


# A task's own connection can be cut too (the terminate test): retry like a real app would.
@app.task(bind=True, max_retries=20, autoretry_for=(psycopg.OperationalError,),
          default_retry_delay=0.1)
def work(self, i, ms):
    time.sleep(ms / 1000)
    with app.connection() as conn:
        conn.execute(_executions, (self.request.id, i, os.getpid()))
    return i


@app.task
def linger(i, ms):
    """Say it began (a row with ``i`` negative), then run ``ms`` milliseconds."""
    with app.connection() as conn:
        conn.execute(_executions, (linger.request.id, -1 - i, os.getpid()))
    time.sleep(ms / 1000)
    return i


@app.task(max_retries=2)
def kill_my_worker():
    os._exit(1)


@app.task(time_limit=1)
def overrun():
    time.sleep(60)


@app.task
def quick(i):
    return i * 2
