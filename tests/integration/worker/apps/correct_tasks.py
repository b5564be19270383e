"""Tasks for tests/integration/worker/test_every_job_ends.py, run by real
`pgqueue worker` processes. Tasks that must say they began write a line to the file
named by $CORRECT_MARKS (the test waits on it), not to the database."""

import os
import time

from pgqueue import App
from pgqueue.contrib.abortable import AbortableTask

app = App("correct")
# A fast rescuer keeps the tests quick; production defaults are longer.
app.conf.update(leader_ttl_seconds=2, maintenance_interval=0.3)


def mark(text):
    fd = os.open(os.environ["CORRECT_MARKS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{text}\n".encode())
    finally:
        os.close(fd)


@app.task
def echo(*values, **named):
    """The values as the worker read them, and the names of their types."""
    return {"values": list(values), "types": [type(v).__name__ for v in values],
            "named": named}


@app.task(bind=True, base=AbortableTask)
def abortable(self, ms):
    """Says it began, then runs ``ms`` milliseconds unless told to abort."""
    mark(f"began {self.request.id} {os.getpid()} aborted={self.is_aborted()}")
    deadline = time.monotonic() + ms / 1000
    while time.monotonic() < deadline:
        if self.is_aborted():
            mark(f"aborted {self.request.id}")
            return "aborted"
        time.sleep(0.01)
    return "done"


@app.task(bind=True)
def stubborn(self, ms):
    """Swallows every interruption (terminate too) and runs on for ``ms`` milliseconds."""
    mark(f"began {self.request.id}")
    deadline = time.monotonic() + ms / 1000
    while time.monotonic() < deadline:
        try:
            time.sleep(0.01)
        except BaseException:  # noqa: BLE001 - the point of this task
            mark(f"swallowed {self.request.id}")
    return "stubborn"


@app.task
def quick(i):
    return i


@app.task(bind=True, max_retries=1, default_retry_delay=0)
def retrying(self):
    """Retries until its max_retries is spent (the job's, when it was sent with one)."""
    mark(f"attempt {self.request.id} {self.request.retries}")
    raise self.retry(countdown=0)

