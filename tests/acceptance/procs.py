"""Real processes for acceptance tests: `pgqueue worker` subprocesses and a private
PostgreSQL cluster that a test may restart without disturbing anything else."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from tests.conftest import wait_until

HERE = Path(__file__).resolve().parent


def pgqueue_command() -> list[str]:
    script = Path(sys.executable).parent / "pgqueue"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pgqueue"]


class WorkerProcess:
    """A `pgqueue worker` subprocess with its output captured to a file."""

    def __init__(self, dsn: str, schema: str, app: str, *args: str,
                 apps_dir: Path = HERE / "fault_apps") -> None:
        self.log_path = Path(tempfile.mkstemp(prefix="pgqueue-worker-", suffix=".log")[1])
        env = {**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": schema,
               "PYTHONPATH": os.pathsep.join([str(apps_dir), os.environ.get("PYTHONPATH", "")])}
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [*pgqueue_command(), "worker", "-A", app, *args], env=env,
            stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def wait_ready(self, timeout: float = 90) -> None:
        """Until the banner: a fresh interpreter's imports take long on a loaded machine."""
        try:
            wait_until(lambda: " ready" in self.output() or self.proc.poll() is not None,
                       timeout, message="worker banner")
        except AssertionError as e:
            raise AssertionError(f"{e}; the worker's output so far:\n{self.output()}") from None
        assert self.proc.poll() is None, f"worker exited early:\n{self.output()}"

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(10)
        self.log.close()


@contextmanager
def workers() -> Iterator[list[WorkerProcess]]:
    """Collects the workers a test starts and kills whatever is left at the end."""
    started: list[WorkerProcess] = []
    try:
        yield started
    finally:
        for worker in started:
            worker.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateCluster:
    """A throwaway PostgreSQL server on its own port and data directory."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        initdb = bins[-1] if bins else shutil.which("initdb")
        if not initdb:
            pytest.skip("initdb not found: the Postgres-restart test needs server binaries")
        self.bindir = Path(initdb).parent
        self.root = Path(tempfile.mkdtemp(prefix="pgqueue-cluster-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres")
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust",
                  "-U", "postgres", "--no-sync")

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, cwd=self.root)

    def _ctl(self, action: str) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.root / "server.log"), "-o", options, "-w", "-m", "fast", action)

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("restart")

    def stop(self) -> None:
        self._ctl("stop")

    def destroy(self) -> None:
        with suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
