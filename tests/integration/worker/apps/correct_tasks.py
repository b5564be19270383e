"""Tasks for tests/integration/worker/test_every_job_ends.py, run by real
`pgqueue worker` processes. Tasks that must say they began write a line to the file
named by $CORRECT_MARKS (the test waits on it), not to the database."""

import logging
import os
import threading
import time

from pgqueue import App, signals
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
    return _run_stubbornly(self.request.id, ms)


def _run_stubbornly(task_id, ms):
    mark(f"began {task_id}")
    deadline = time.monotonic() + ms / 1000
    while time.monotonic() < deadline:
        try:
            time.sleep(0.01)
        except BaseException:  # noqa: BLE001 - the point of this task
            mark(f"swallowed {task_id}")
    mark(f"returns {task_id}")
    return "stubborn"


class Hooked(app.Task):
    """Writes ``hook <name> <id> <state or exception>`` for each hook that runs."""

    def on_success(self, retval, task_id, args, kwargs):
        mark(f"hook on_success {task_id} SUCCESS")

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        mark(f"hook on_failure {task_id} {type(exc).__name__}")

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        mark(f"hook after_return {task_id} {status}")


@app.task(bind=True, base=Hooked)
def hooked_stubborn(self, ms):
    """``stubborn``, with hooks and signals that write what they see."""
    return _run_stubbornly(self.request.id, ms)


@app.task(bind=True, base=Hooked)
async def hooked_async_stubborn(self, ms):
    """A coroutine that swallows every CancelledError and returns after ``ms``."""
    import asyncio

    mark(f"began {self.request.id}")
    deadline = time.monotonic() + ms / 1000
    while time.monotonic() < deadline:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            mark(f"swallowed {self.request.id}")
    mark(f"returns {self.request.id}")
    return "stubborn"


def _signal_marks(name):
    def receiver(sender=None, task_id=None, request=None, state=None, terminated=None,
                 **_):
        job_id = task_id or (request.id if request is not None else None) \
            or sender.request.id
        seen = state if name == "task_postrun" else terminated
        mark(f"hook {name} {job_id} {seen}")
    return receiver


for _name in ("task_success", "task_failure", "task_postrun", "task_revoked"):
    for _task in (hooked_stubborn, hooked_async_stubborn):
        getattr(signals, _name).connect(_signal_marks(_name), sender=_task, weak=False)


@app.task
def quick(i):
    return i


@app.task(bind=True, max_retries=1, default_retry_delay=0)
def retrying(self):
    """Retries until its max_retries is spent (the job's, when it was sent with one)."""
    mark(f"attempt {self.request.id} {self.request.retries}")
    raise self.retry(countdown=0)



@app.task(bind=True)
async def async_sleeper(self, ms, hold_until_terminated=False):
    """A coroutine that says it began, then sleeps ``ms`` milliseconds."""
    import asyncio

    mark(f"began {self.request.id}")
    await asyncio.sleep(ms / 1000)
    return "slept"


@app.task(bind=True)
async def async_swallower(self, ms):
    """A coroutine that catches the first CancelledError and returns normally."""
    import asyncio

    mark(f"began {self.request.id}")
    try:
        await asyncio.sleep(ms / 1000)
    except asyncio.CancelledError:
        mark(f"swallowed {self.request.id}")
    return "swallowed"


@app.task(bind=True)
async def async_stubborn(self, ms):
    """A coroutine that swallows every CancelledError and awaits on for ``ms``
    milliseconds."""
    import asyncio

    mark(f"began {self.request.id}")
    deadline = time.monotonic() + ms / 1000
    while time.monotonic() < deadline:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            mark(f"swallowed {self.request.id}")
    return "stubborn"


@app.task(bind=True)
async def holds_a_default_thread(self, seconds):
    """A coroutine that waits in the loop's default executor (``asyncio.to_thread``)
    until the marks file says ``release`` (or ``seconds`` pass)."""
    import asyncio

    await asyncio.to_thread(_wait_for_release, f"holding {self.request.id}", seconds)
    return True


@app.task(bind=True, track_started=True)
async def tracked_until_released(self, seconds):
    """``track_started``; says it arrived, then awaits ``release`` in the marks file."""
    import asyncio

    mark(f"arrived {self.request.id}")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _released():
            return True
        await asyncio.sleep(0.05)
    raise RuntimeError("never released")


def _released():
    with open(os.environ["CORRECT_MARKS"]) as marks:
        return any(line == "release\n" for line in marks)


def _wait_for_release(text, seconds):
    mark(text)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not _released():
        time.sleep(0.05)


@app.task(bind=True)
def plain_sleeper(self, ms, hold_until_terminated=False):
    """A plain function that says it began and when it ended (``-P asyncio`` runs it in
    a thread)."""
    mark(f"began {self.request.id}")
    time.sleep(ms / 1000)
    mark(f"ended {self.request.id}")
    return "slept"


@app.task(bind=True)
def barrier(self, n, seconds):
    """Says it arrived, then waits until ``n`` tasks have (or fails after ``seconds``):
    it ends only if ``n`` of them run at once."""
    mark(f"arrived {self.request.id}")
    path = os.environ["CORRECT_MARKS"]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with open(path) as marks:
            if sum(line.startswith("arrived ") for line in marks) >= n:
                return True
        time.sleep(0.02)
    raise RuntimeError(f"fewer than {n} tasks ran at once")


@app.task(bind=True)
def exits(self):
    """A plain function that tries to end its process."""
    import sys

    mark(f"began {self.request.id}")
    sys.exit(3)


@app.task(bind=True)
def blocks_forever(self):
    """A plain function stuck in one C call that nothing interrupts."""
    mark(f"began {self.request.id}")
    threading.Event().wait()


@app.task(bind=True, max_retries=3)
def retries_once(self):
    """Its first attempt asks to run again in an hour (the test makes it due)."""
    mark(f"attempt {self.request.id} {self.request.retries}")
    if self.request.retries == 0:
        raise self.retry(countdown=3600)
    return "ran again"


# -- a terminate that arrives after the claim, before the pool runs the job ---------------
class _TerminatesSeen(logging.Handler):
    """The jobs the worker started terminating ("Terminating job <id> on request")."""

    def __init__(self):
        super().__init__()
        self.ids = set()
        self.changed = threading.Condition()

    def emit(self, record):
        if record.getMessage().startswith("Terminating job "):
            with self.changed:
                self.ids.add(record.getMessage().split()[2])
                self.changed.notify_all()


_terminates = _TerminatesSeen()
logging.getLogger("pgqueue.worker").addHandler(_terminates)


@signals.task_received.connect
def _hold_until_terminated(request, **_):
    """For a job sent with ``hold_until_terminated=True``: keeps the claim loop between
    the claim (the worker holds the job) and handing the job to its pool until the
    worker has begun terminating it, and a moment more for the pool to be told. The
    pool must then stop the job before it runs."""
    if not request.kwargs.get("hold_until_terminated"):
        return
    with _terminates.changed:
        _terminates.changed.wait_for(lambda: request.id in _terminates.ids, timeout=30)
    time.sleep(0.2)  # the listener's pool.terminate() call, right after its log line

