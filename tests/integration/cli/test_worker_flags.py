"""The flags of `pgqueue worker` and `pgqueue beat` have their effect on a real process:
the registry (WORKER_FLAGS, BEAT_FLAGS in pgqueue/celery_compat.py) points here for the
flags no other test shows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import App
from pgqueue.utils import hostname
from tests.acceptance.procs import pgqueue_command
from tests.conftest import running_worker, wait_until

ROOT = Path(__file__).resolve().parents[3]
APP = '''
import json, os, time
from pgqueue import App, SoftTimeLimitExceeded, signals

app = App("flagsapp")


def dump(what):
    with open(os.environ["FLAGS_DUMP"], "w") as file:
        json.dump(what, file, default=str)


@signals.celeryd_init.connect
def worker_options(sender=None, options=None, **kwargs):
    dump(options)


@signals.beat_init.connect
def beat_settings(sender=None, **kwargs):
    dump({"max_interval": sender.app.conf.beat_max_loop_interval, "holder": sender.holder})


def linger():
    for _ in range(600):  # short sleeps: a thread sees its limit between two
        time.sleep(0.1)


@app.task(name="flags.nap")
def nap(kind):
    try:
        linger()
    except SoftTimeLimitExceeded:
        if kind == "soft":
            return "soft"
        linger()
'''
EXTRA = '''
from flagsapp import app


@app.task(name="flags.extra")
def extra():
    return "included"
'''


@pytest.fixture
def apps(tmp_path: Path) -> Path:
    (tmp_path / "flagsapp.py").write_text(APP)
    (tmp_path / "flagsextra.py").write_text(EXTRA)
    return tmp_path


@pytest.fixture
def spawn(pg_dsn: str, apps: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[Any]] = []

    def start(*args: str) -> subprocess.Popen[Any]:
        env = {**os.environ, "FLAGS_DUMP": str(apps / "dump.json"),
               "PYTHONPATH": os.pathsep.join([str(apps), str(ROOT),
                                              os.environ.get("PYTHONPATH", "")])}
        env.pop("PGQUEUE_DSN", None)
        env.pop("PGQUEUE_SCHEMA", None)
        proc = subprocess.Popen([*pgqueue_command(), *args], env=env, cwd=apps,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def ready(proc: subprocess.Popen[Any], log: Path) -> str:
    wait_until(lambda: proc.poll() is not None or (log.exists() and " ready" in
                                                   log.read_text()),
               timeout=60, interval=0.05, message="ready in the log file")
    assert proc.poll() is None, log.read_text() if log.exists() else "exited, no log"
    return log.read_text()


def stop(proc: subprocess.Popen[Any]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0


def test_worker_flags_shape_the_running_worker(pg_dsn: str, schema: str, apps: Path,
                                               spawn: Any) -> None:
    log = apps / "worker.log"
    proc = spawn("worker", "-A", "flagsapp", "--dsn", pg_dsn, "--schema", schema,
                 "-c", "3", "-Q", "alpha,beta", "-n", "probe@%h", "-I", "flagsextra",
                 "--poll-interval", "0.7", "--lease", "20", "--shutdown-timeout", "4",
                 "-f", str(log))
    banner = ready(proc, log)
    assert f"probe@{hostname()}" in banner and "queues: alpha, beta" in banner
    assert "pool: threads, concurrency 3, lease 20s" in banner
    options = json.loads((apps / "dump.json").read_text())
    assert (options["poll_interval"], options["shutdown_timeout"]) == (0.7, 4)
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(f'SELECT queues, concurrency FROM "{schema}".workers').fetchone()
    assert row == (["alpha", "beta"], 3)
    producer = App("flags-producer", dsn=pg_dsn, schema=schema, set_as_current=False)
    try:  # -I imported flagsextra: its task runs, sent by name to a queue of -Q
        assert producer.send_task("flags.extra", queue="beta").get(timeout=30) == "included"
    finally:
        producer.close()
    stop(proc)


def test_time_limit_flags_end_the_jobs(pg_dsn: str, schema: str, apps: Path,
                                       spawn: Any) -> None:
    log = apps / "limits.log"
    proc = spawn("worker", "-A", "flagsapp", "--dsn", pg_dsn, "--schema", schema, "-c", "2",
                 "--soft-time-limit", "1", "--time-limit", "3", "-f", str(log))
    ready(proc, log)
    producer = App("flags-producer", dsn=pg_dsn, schema=schema, set_as_current=False)
    try:
        soft = producer.send_task("flags.nap", ["soft"])
        hard = producer.send_task("flags.nap", ["hard"])
        assert soft.get(timeout=30) == "soft"  # SoftTimeLimitExceeded reached the task
        wait_until(hard.ready, timeout=30, interval=0.1, message="hard limit ends the job")
        assert hard.state == "FAILURE" and "TimeLimitExceeded" in repr(hard.result)
    finally:
        producer.close()
    stop(proc)


def test_max_memory_per_child_replaces_the_child(app: App) -> None:
    @app.task(name="flags.pid")
    def pid() -> int:
        return os.getpid()

    # 1 KiB: every job leaves its child above it, so each job gets a fresh child
    with running_worker(app, pool="processes", concurrency=1, max_memory_per_child=1):
        pids = [pid.delay().get(timeout=30) for _ in range(3)]
    assert len(set(pids)) == 3, pids


def test_beat_flags_shape_the_running_beat(pg_dsn: str, schema: str, apps: Path,
                                           spawn: Any) -> None:
    proc = spawn("beat", "-A", "flagsapp", "--dsn", pg_dsn, "--schema", schema,
                 "-n", "sched@%h", "-l", "warning", "--max-interval", "0.5",
                 "-s", "celerybeat-schedule", "-f", str(apps / "%n.log"),
                 "--pidfile", str(apps / "%n.pid"))
    log, pidfile, dump = apps / "sched.log", apps / "sched.pid", apps / "dump.json"
    wait_until(lambda: proc.poll() is not None or (dump.exists() and dump.read_text()),
               timeout=60, interval=0.05, message="beat_init")
    assert proc.poll() is None, log.read_text() if log.exists() else "exited, no log"
    assert pidfile.read_text().strip() == str(proc.pid)
    seen = json.loads(dump.read_text())
    assert seen["max_interval"] == 0.5 and seen["holder"].startswith(f"sched@{hostname()}:")
    stop(proc)
    assert not pidfile.exists()
    lines = log.read_text().splitlines()
    assert lines == [line for line in lines if "INFO" not in line]  # -l warning: no banner
    assert any("-s: beat keeps its state in the schedules table" in line for line in lines)
