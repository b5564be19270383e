"""Tasks for tests/integration/worker/test_pool_gaps.py, run by real `pgqueue worker`
processes. Each hook and signal that runs writes ``hook <name> <id> <what> <pid>`` to
the file named by $POOL_GAPS_MARKS (the tests wait on its lines); tasks write
``began <id> <pid>`` when they begin."""

import asyncio
import os
import sys
import threading
import time

from pgqueue import App, TimeLimitExceeded, signals

app = App("pool_gaps")
# A fast rescuer keeps the tests quick; production defaults are longer.
app.conf.update(leader_ttl_seconds=2, maintenance_interval=0.3)
if os.environ.get("POOL_GAPS_PRODUCER_POOL"):
    app.conf.producer_pool_size = int(os.environ["POOL_GAPS_PRODUCER_POOL"])


def mark(text):
    fd = os.open(os.environ["POOL_GAPS_MARKS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{text}\n".encode())
    finally:
        os.close(fd)


class Hooked(app.Task):
    """Writes a line for each of its hooks that runs."""

    def on_success(self, retval, task_id, args, kwargs):
        mark(f"hook on_success {task_id} SUCCESS {os.getpid()}")

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        mark(f"hook on_failure {task_id} {type(exc).__name__} {os.getpid()}")

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        mark(f"hook after_return {task_id} {status} {os.getpid()}")


@app.task(bind=True, base=Hooked)
def sleeper(self, ms):
    """Sleeps ``ms`` milliseconds in short steps (a thread's interruption lands at once)."""
    mark(f"began {self.request.id} {os.getpid()}")
    deadline = time.monotonic() + ms / 1000
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return "slept"


@app.task(bind=True, base=Hooked)
def swallower(self, ms):
    """Swallows every interruption and returns after ``ms`` milliseconds."""
    mark(f"began {self.request.id} {os.getpid()}")
    deadline = time.monotonic() + ms / 1000
    while time.monotonic() < deadline:
        try:
            time.sleep(0.01)
        except BaseException:  # noqa: BLE001 - the point of this task
            mark(f"swallowed {self.request.id}")
    mark(f"returns {self.request.id}")
    return "swallowed"


@app.task(bind=True, base=Hooked)
def exits_when_limited(self, ms):
    """Turns its time limit into ``sys.exit(3)``."""
    mark(f"began {self.request.id} {os.getpid()}")
    try:
        deadline = time.monotonic() + ms / 1000
        while time.monotonic() < deadline:
            time.sleep(0.01)
    except TimeLimitExceeded:
        mark(f"returns {self.request.id}")
        sys.exit(3)
    return "slept"


@app.task(bind=True, base=Hooked)
async def async_sleeper(self, ms):
    mark(f"began {self.request.id} {os.getpid()}")
    await asyncio.sleep(ms / 1000)
    return "slept"


@app.task(bind=True, base=Hooked)
async def async_swallower(self, ms):
    """A coroutine that swallows every cancel and returns after ``ms`` milliseconds."""
    mark(f"began {self.request.id} {os.getpid()}")
    deadline = time.monotonic() + ms / 1000
    while time.monotonic() < deadline:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            mark(f"swallowed {self.request.id}")
    mark(f"returns {self.request.id}")
    return "swallowed"


@app.task(bind=True, base=Hooked)
def dies(self, code):
    """Ends its process at once, as a crash would (only under -P processes)."""
    mark(f"began {self.request.id} {os.getpid()}")
    os._exit(code)


@app.task
def quick(i):
    return i


@app.task(bind=True)
def says_when(self):
    """When it began, by the clock its worker's events use."""
    mark(f"began {self.request.id} {os.getpid()} {time.time()}")
    return time.time()


@app.task(bind=True, max_retries=5, default_retry_delay=0)
def retries_until_released(self):
    """Runs, says so, and retries at once until the marks file says ``release``."""
    mark(f"attempt {self.request.id} {self.request.retries} {os.getpid()}")
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        time.sleep(0.01)
    with open(os.environ["POOL_GAPS_MARKS"]) as marks:
        if any(line == "release\n" for line in marks):
            return "done"
    raise self.retry(countdown=0)


def _signal_marks(name):
    def receiver(sender=None, task_id=None, request=None, state=None, terminated=None,
                 exception=None, **_):
        job_id = task_id or (request.id if request is not None else None) \
            or sender.request.id
        seen = (state if name == "task_postrun" else terminated if name == "task_revoked"
                else type(exception).__name__ if name == "task_failure" else "-")
        where = "thread" if threading.current_thread() is not threading.main_thread() \
            else "main"
        mark(f"hook {name} {job_id} {seen} {os.getpid()} {where}")
    return receiver


for _name in ("task_prerun", "task_success", "task_failure", "task_postrun",
              "task_revoked"):
    for _task in (sleeper, swallower, exits_when_limited, async_sleeper, async_swallower,
                  dies):
        getattr(signals, _name).connect(_signal_marks(_name), sender=_task, weak=False)


if os.environ.get("POOL_GAPS_HOSTILE_RECEIVER"):
    def _hostile(**_):
        print("hostile receiver raises SystemExit", file=sys.stderr, flush=True)
        raise SystemExit(5)

    signals.task_failure.connect(_hostile, sender=sleeper, weak=False)


def _marked(word):
    with open(os.environ["POOL_GAPS_MARKS"]) as marks:
        return any(line == f"{word}\n" for line in marks)


def _wait_for(word, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not _marked(word):
        time.sleep(0.02)


@app.task(bind=True)
def waits_for(self, word):
    """Says it began, then waits until the marks file has the line ``word``."""
    mark(f"began {self.request.id} {os.getpid()} {time.time()}")
    _wait_for(word)
    return word


if os.environ.get("POOL_GAPS_HOLD_RECEIVED"):
    # The claim loop hands a job to its pool after its task_received receivers: this one
    # holds the jobs of waits_for there (claimed, not started) until "received" is marked.
    def _hold_received(request=None, **_):
        if request is not None and request.task == "pool_gaps.waits_for":
            mark(f"held {request.id}")
            _wait_for("received")

    signals.task_received.connect(_hold_received, weak=False)

if os.environ.get("POOL_GAPS_HOLD_CHILDREN"):
    # A child of -P processes gets to its first job only when "children" is marked.
    def _hold_child(**_):
        mark(f"child {os.getpid()}")
        _wait_for("children")

    signals.worker_process_init.connect(_hold_child, weak=False)


@app.task(bind=True, max_retries=5)
def retries_after(self, word):
    """Its first attempt waits for the line ``word``, then retries at once; a later
    attempt returns."""
    mark(f"attempt {self.request.id} {self.request.retries} {os.getpid()}")
    if self.request.retries == 0:
        _wait_for(word)
        raise self.retry(countdown=0)
    return "ran again"


# -- STARTED writes of async tasks beside tasks that send (the producer pool, 4) ----------
@app.task(bind=True, track_started=True)
async def tracked_probe(self):
    """``track_started`` (a producer sending by name does not know it, so the worker
    writes STARTED before the body runs): when its body began."""
    return time.time()


@app.task(bind=True)
async def untracked_probe(self):
    return time.time()


@app.task(bind=True)
async def sends_in_a_loop(self, n, queue):
    """Sends ``n`` jobs to ``queue``, one at a time, each from a thread (a blocking send
    must not hold the loop)."""
    for i in range(n):
        await asyncio.to_thread(app.send_task, "pool_gaps.quick", [i], queue=queue)
    return n


def _hold_a_producer_connection(text, word):
    with app.connection():
        mark(text)
        _wait_for(word)


@app.task(bind=True)
async def holds_a_producer_connection(self, word):
    """Holds one connection of the app's pool (from a thread) until ``word``."""
    await asyncio.to_thread(_hold_a_producer_connection, f"holding {self.request.id}", word)
    return True


@app.task(bind=True, track_started=True)
async def tracked_waits_for(self, word):
    mark(f"began {self.request.id} {os.getpid()}")
    while not _marked(word):
        await asyncio.sleep(0.02)
    return word

if os.environ.get("POOL_GAPS_CHILD_DIES_ONCE"):
    # One child (the first to take the flag file) dies in worker_process_init once
    # "die" is marked, before it begins the job it was handed.
    def _die_once(**_):
        flag = os.environ["POOL_GAPS_CHILD_DIES_ONCE"]
        try:
            os.rename(flag, flag + ".taken")
        except FileNotFoundError:
            return
        mark(f"dying {os.getpid()}")
        _wait_for("die")
        os._exit(7)

    signals.worker_process_init.connect(_die_once, weak=False)
