"""``pgqueue demo``: the main job end to end, on whatever database is configured.

It migrates a throwaway schema, runs a worker (and the scheduler, when ``pgqueue.beat`` is
there) in this process, sends a mix of example tasks, shows their progress live, prints a
summary, and drops the schema again unless asked to keep it. On the embedded server, it
stops the server at the end when it started it and nothing else uses it, unless asked to
keep it. Success means every job ended in the state it was designed to end in.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql

from pgqueue import db, states
from pgqueue.app import App
from pgqueue.db import migrations
from pgqueue.result import AsyncResult
from pgqueue.task import Task
from pgqueue.worker.worker import Worker

REFRESH_SECONDS = 0.1
PLAIN_REPORT_SECONDS = 1.0
REMIND_COUNTDOWN = 3.0
CRUNCH_STEPS = 8
CRUNCH_PAUSE = 0.25
FLAKY_FAILURES = 2
TICK_EVERY = 1.0


@dataclass
class DemoJob:
    """One job the demo sent, what it should end as, and what was seen of it."""

    label: str
    task: str
    result: AsyncResult
    expected: str
    check: Callable[[DemoJob], str | None] = lambda job: None
    sent_at: float = field(default_factory=time.monotonic)
    done_at: float | None = None
    state: str = states.PENDING
    value: Any = None
    retries: int = 0
    problem: str | None = None

    def refresh(self) -> None:
        if self.done_at is not None:
            return
        self.state = self.result.state
        if self.state == "PROGRESS":
            self.value = self.result.info
        if self.state in states.READY_STATES:
            self.done_at = time.monotonic()
            self.value = self.result.result
            self.retries = self.result.retries
            self.problem = self._judge()

    def _judge(self) -> str | None:
        if self.state != self.expected:
            return f"ended {self.state}, expected {self.expected}"
        return self.check(self)

    @property
    def ok(self) -> bool:
        return self.done_at is not None and self.problem is None


@dataclass
class Ticks:
    """Fires of the periodic task, recorded by the task itself (it runs in this process)."""

    times: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self) -> None:
        with self.lock:
            self.times.append(time.monotonic())

    def count(self) -> int:
        with self.lock:
            return len(self.times)


def register_tasks(app: App, ticks: Ticks) -> dict[str, Task]:
    """The example tasks, registered on ``app``."""

    @app.task(name="demo.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="demo.flaky", bind=True, max_retries=FLAKY_FAILURES + 1)
    def flaky(self: Task, failures: int) -> str:
        if self.request.retries < failures:
            raise self.retry(exc=ConnectionError("the service is busy"), countdown=0.3)
        return f"worked after {self.request.retries} retries"

    @app.task(name="demo.doomed", bind=True, max_retries=1)
    def doomed(self: Task) -> None:
        raise self.retry(exc=ValueError("this input can never work"), countdown=0.3)

    @app.task(name="demo.remind")
    def remind() -> float:
        return time.time()  # when it ran, to show the countdown was honoured

    @app.task(name="demo.crunch", bind=True)
    def crunch(self: Task, steps: int, pause: float) -> int:
        for step in range(1, steps + 1):
            time.sleep(pause)  # stands for real work
            self.update_state(state="PROGRESS", meta={"current": step, "total": steps})
        return steps

    @app.task(name="demo.tick", ignore_result=True)
    def tick() -> None:
        ticks.add()

    return {t.name: t for t in (add, flaky, doomed, remind, crunch, tick)}


def send_jobs(tasks: dict[str, Task]) -> list[DemoJob]:
    """Send the example jobs; each knows the state it should end in."""
    add, flaky, doomed = tasks["demo.add"], tasks["demo.flaky"], tasks["demo.doomed"]
    remind, crunch = tasks["demo.remind"], tasks["demo.crunch"]
    jobs = [DemoJob("quick", add.name, add.delay(x, y), states.SUCCESS, _expect_value(x + y))
            for x, y in ((1, 2), (3, 4), (10, 20), (7, 35), (100, 1), (6, 7))]
    jobs.append(DemoJob("retries", flaky.name, flaky.delay(FLAKY_FAILURES), states.SUCCESS,
                        _expect_retries(FLAKY_FAILURES)))
    jobs.append(DemoJob("fails", doomed.name, doomed.delay(), states.FAILURE,
                        _expect_retries(1)))
    due = time.time() + REMIND_COUNTDOWN
    jobs.append(DemoJob("scheduled", remind.name, remind.apply_async(countdown=REMIND_COUNTDOWN),
                        states.SUCCESS, _expect_not_before(due)))
    jobs.append(DemoJob("progress", crunch.name, crunch.delay(CRUNCH_STEPS, CRUNCH_PAUSE),
                        states.SUCCESS, _expect_value(CRUNCH_STEPS)))
    return jobs


def _expect_value(expected: Any) -> Callable[[DemoJob], str | None]:
    return lambda job: None if job.value == expected else f"returned {job.value!r}"


def _expect_retries(count: int) -> Callable[[DemoJob], str | None]:
    return lambda job: None if job.retries == count else f"retried {job.retries}x, not {count}x"


def _expect_not_before(due: float) -> Callable[[DemoJob], str | None]:
    slack = 0.05  # clock resolution
    return lambda job: None if float(job.value) >= due - slack else "ran before its countdown"


class _QuietExpectedFailures(logging.Filter):
    """The demo's failing job fails on purpose: do not print its error as if it were news."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR
                    and any(i in record.getMessage() for i in self.ids))


# -- the terminal --------------------------------------------------------------------------
def _bar(current: int, total: int, width: int = 16) -> str:
    filled = int(width * current / total) if total else 0
    return "[" + "#" * filled + "." * (width - filled) + f"] {current}/{total}"


def _describe(job: DemoJob, now: float) -> str:
    if job.done_at is not None:
        mark = "ok" if job.ok else f"UNEXPECTED: {job.problem}"
        return f"{job.state} in {job.done_at - job.sent_at:.2f}s  {mark}"
    if job.state == "PROGRESS" and isinstance(job.value, dict):
        return f"PROGRESS {_bar(int(job.value.get('current', 0)), int(job.value.get('total', 0)))}"
    if job.label == "scheduled" and job.state == states.PENDING:
        due = job.sent_at + REMIND_COUNTDOWN - now
        return f"SCHEDULED, due in {max(0.0, due):.1f}s" if due > 0 else "PENDING"
    return job.state


class LiveView:
    """Redraws one line per job on a terminal; prints a short status line otherwise."""

    def __init__(self, out: IO[str], beat: bool) -> None:
        self.out = out
        self.tty = out.isatty()
        self.beat = beat
        self.drawn = 0
        self.last_plain = ""
        self.last_plain_at = 0.0

    def lines(self, jobs: list[DemoJob], ticks: Ticks, now: float) -> list[str]:
        lines = [f"  {job.label:<10} {job.task:<13} {_describe(job, now)}"
                 for job in jobs]
        if self.beat:
            lines.append(f"  {'periodic':<10} {'demo.tick':<13} fired {ticks.count()}x "
                         f"(every {TICK_EVERY:g}s)")
        return lines

    def draw(self, jobs: list[DemoJob], ticks: Ticks, elapsed: float, final: bool) -> None:
        now = time.monotonic()
        if self.tty:
            width = shutil.get_terminal_size().columns - 1  # a wrapped line breaks the redraw
            lines = [line[:width] for line in self.lines(jobs, ticks, now)]
            if self.drawn:
                self.out.write(f"\x1b[{self.drawn}F")  # back to the first line drawn
            self.out.write("".join(f"\x1b[2K{line}\n" for line in lines))
            self.drawn = len(lines)
        else:
            done = sum(job.done_at is not None for job in jobs)
            counts: dict[str, int] = {}
            for job in jobs:
                counts[job.state] = counts.get(job.state, 0) + 1
            text = f"{done}/{len(jobs)} jobs finished (" + ", ".join(
                f"{state} {n}" for state, n in sorted(counts.items())) + ")"
            if final or (text != self.last_plain and now - self.last_plain_at
                         >= PLAIN_REPORT_SECONDS):
                self.out.write(f"  [{elapsed:4.1f}s] {text}\n")
                self.last_plain, self.last_plain_at = text, now
        self.out.flush()


def print_summary(out: IO[str], jobs: list[DemoJob], beat: bool, ticks: Ticks) -> None:
    headers = ["job", "task", "expected", "final state", "retries", "seconds", "check"]
    rows = [[job.label, job.task, job.expected,
             job.state if job.done_at is not None else f"{job.state} (unfinished)",
             str(job.retries),
             f"{job.done_at - job.sent_at:.2f}" if job.done_at is not None else "-",
             "ok" if job.ok else (job.problem or "did not finish in time")]
            for job in jobs]
    if beat:
        rows.append(["periodic", "demo.tick", "fires", f"fired {ticks.count()}x", "-", "-",
                     "ok" if ticks.count() else "never fired"])
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    out.write("\n")
    for i, row in enumerate([headers, *rows]):
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        out.write("  ".join(cells).rstrip() + "\n")
        if i == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


# -- the run -------------------------------------------------------------------------------
def beat_available() -> bool:
    return importlib.util.find_spec("pgqueue.beat") is not None


def _embedded_dir(explicit_dsn: str | None) -> Path | None:
    """The embedded server's directory when the demo runs there, else None."""
    configured = explicit_dsn or os.environ.get("PGQUEUE_DSN") or os.environ.get("DATABASE_URL")
    if configured:
        return None
    from pgqueue.db import embedded

    return embedded.data_dir() if embedded.available() else None


def _where(app: App, server: Path | None, was_running: bool, keep: bool) -> str:
    if server is None:
        return db.describe(app.dsn)
    if was_running:
        return f"embedded server in {server} (already running; left running)"
    then = "kept running (--keep)" if keep else "stopped at the end; --keep keeps it"
    return f"embedded server in {server} (started for the demo: {then})"


def _stop_embedded(dsn: str, server: Path, schema: str) -> str:
    """Stop the server the demo started, unless another client came to use it meanwhile;
    says which."""
    from pgqueue.db import embedded

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " AND pid <> pg_backend_pid() AND application_name NOT LIKE %s",
            [f"pgqueue:{schema}:%"]).fetchone()
    if row and row[0]:
        return (f"the embedded server in {server} keeps running: {row[0]} other client(s) "
                "use it; `pgqueue db stop` stops it")
    embedded.stop(server)
    return f"stopped the embedded server in {server} (`pgqueue db start` starts it)"


def _embedded_running(server: Path) -> bool:
    from pgqueue.db import embedded

    return embedded.status(server).running


def _start_worker(app: App, beat: bool) -> tuple[Worker, threading.Thread]:
    worker = Worker(app, install_signal_handlers=False, concurrency=4, beat=beat,
                    shutdown_timeout=5, name="pgqueue-demo")
    failure: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as error:  # reported by the main thread
            failure.append(error)
            worker.started.set()

    thread = threading.Thread(target=run, name="demo-worker", daemon=True)
    thread.start()
    if not worker.started.wait(15) or failure:
        raise failure[0] if failure else RuntimeError("the demo worker did not start")
    deadline = time.monotonic() + 10
    while not worker.listener.ready.is_set() and time.monotonic() < deadline:
        worker.listener.ready.wait(0.1)
    return worker, thread


def _drop_schema(dsn: str, schema: str) -> None:
    # named like the demo's own sessions, which _stop_embedded does not count as others
    with psycopg.connect(dsn, autocommit=True, application_name=f"pgqueue:{schema}:drop") as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _watch(jobs: list[DemoJob], ticks: Ticks, view: LiveView, started: float,
           timeout: float) -> None:
    """Show the jobs until all have finished (and the periodic task fired) or time is up."""
    deadline = time.monotonic() + timeout
    while True:
        for job in jobs:
            job.refresh()
        finished = all(job.done_at is not None for job in jobs)
        if finished and (not view.beat or ticks.count()) or time.monotonic() > deadline:
            break
        view.draw(jobs, ticks, time.monotonic() - started, final=False)
        time.sleep(REFRESH_SECONDS)  # the display's refresh rate
    view.draw(jobs, ticks, time.monotonic() - started, final=True)


def run_demo(dsn: str | None = None, keep: bool = False, timeout: float = 25.0,
             out: IO[str] | None = None) -> bool:
    """Run the demo; True when every job ended as designed."""
    out = out or sys.stdout
    started = time.monotonic()
    schema = f"pgqueue_demo_{uuid.uuid4().hex[:8]}"
    app = App("pgqueue-demo", dsn=dsn, schema=schema, set_as_current=False)
    server = _embedded_dir(dsn)
    was_running = server is not None and _embedded_running(server)
    migrations.migrate(app.dsn, schema)  # first: a missing database fails before any output
    out.write(f"pgqueue demo\n  database: {_where(app, server, was_running, keep)}\n")
    kept = "kept (--keep)" if keep else "dropped at the end; --keep keeps it"
    out.write(f"  schema:   {schema} ({kept})\n")
    beat = beat_available()
    ticks = Ticks()
    quiet = _QuietExpectedFailures()
    worker: Worker | None = None
    thread: threading.Thread | None = None
    jobs: list[DemoJob] = []
    afterwards = ""
    try:
        tasks = register_tasks(app, ticks)
        if beat:
            app.conf.beat_schedule = {"demo-tick": {"task": "demo.tick",
                                                    "schedule": TICK_EVERY}}
        logging.getLogger("pgqueue.worker").addFilter(quiet)
        worker, thread = _start_worker(app, beat)
        scheduler = "running" if beat else "skipped (pgqueue.beat is not available)"
        out.write(f"  worker:   4 threads in this process; scheduler: {scheduler}\n\n")
        jobs = send_jobs(tasks)
        quiet.ids.update(job.result.id for job in jobs if job.expected == states.FAILURE)
        _watch(jobs, ticks, LiveView(out, beat), started, timeout)
    finally:
        if worker is not None and thread is not None:
            worker.stop()
            thread.join(30)
        app.close()
        logging.getLogger("pgqueue.worker").removeFilter(quiet)
        if not keep:
            _drop_schema(app.dsn, schema)
        if server is not None:
            afterwards = (_stop_embedded(app.dsn, server, schema)
                          if not (was_running or keep) else
                          f"the embedded server in {server} keeps running: "
                          "`pgqueue db stop` stops it")
    print_summary(out, jobs, beat, ticks)
    out.write("\n")
    if server is not None:
        out.write(afterwards + "\n")
    ok = bool(jobs) and all(job.ok for job in jobs) and (not beat or ticks.count() > 0)
    verdict = "every job ended as designed" if ok else "some jobs did not end as designed"
    out.write(f"{verdict} ({time.monotonic() - started:.1f}s)\n")
    if keep:
        out.write(f"the jobs are in schema {schema}: pgqueue inspect --schema {schema}\n")
    return ok
