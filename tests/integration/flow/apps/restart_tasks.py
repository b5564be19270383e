"""Tasks for the Postgres-restart flow test. They record their spans in a file (the
wall clock, one line each, appended), not in the database: a span must be recorded
even while the server is down, and every process here shares the machine's clock."""

import os
import time

from pgqueue import App

app = App("restart_flow")
app.conf.update(leader_ttl_seconds=2, maintenance_interval=0.3,
                queue_concurrency={"narrow": 3})


def _record(kind: str, job_id: str, ms: float) -> None:
    started = time.time()
    time.sleep(ms / 1000)
    line = f"{kind} {job_id} {started:.6f} {time.time():.6f} {os.getpid()}\n"
    fd = os.open(os.environ["RESTART_SPANS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@app.task(bind=True)
def span(self, ms):
    _record("narrow", self.request.id, ms)


@app.task(bind=True, rate_limit="20/s")
def limited(self, i):
    _record("limited", self.request.id, 0)
    return i
