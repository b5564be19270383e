"""A private primary + hot standby pair (streaming replication) for the replica tests.

Built from the PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) in a temp dir
on free ports of 127.0.0.1. As root they run as the ``postgres`` OS user (``runuser``);
the tests are skipped, with the reason, when the binaries or that user are missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg
import pytest

from tests.conftest import wait_until

# Fast to build and to stop; fsync=off loses nothing when a server is killed (the OS
# keeps its writes), only when the machine is.
_SERVER_OPTIONS = ("-c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off "
                   "-c max_connections=100 -c shared_buffers=32MB -c wal_level=replica "
                   "-c max_wal_senders=4 -c hot_standby=on -c wal_receiver_status_interval=1 "
                   "-c hot_standby_feedback=on")


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_basebackup"))
    binary = found[-1] if found else shutil.which("pg_basebackup")
    if not binary or not Path(binary).with_name("initdb").exists():
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) not found: "
                    "the replica tests build their own primary and standby")
    return Path(binary).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """One server of the pair: its data directory, port and pg_ctl."""

    def __init__(self, pair: ReplicaPair, name: str) -> None:
        self.pair = pair
        self.name = name
        self.data = pair.root / name
        self.port = _free_port()
        self.log = pair.root / f"{name}.log"

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def ctl(self, *args: str) -> None:
        self.pair.run(str(self.pair.bindir / "pg_ctl"), "-D", str(self.data), *args)

    def start(self) -> None:
        self.ctl("-l", str(self.log), "-w", "-t", "30", "-o",
                 f"-p {self.port} -k {self.pair.root} {_SERVER_OPTIONS}", "start")

    def stop(self, mode: str = "fast") -> None:
        self.ctl("-w", "-m", mode, "stop")

    def promote(self) -> None:
        self.ctl("-w", "-t", "30", "promote")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def query(self, statement: str) -> list[tuple[object, ...]]:
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(statement.encode())
            return cur.fetchall() if cur.description else []

    def server_log(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


class ReplicaPair:
    """``primary`` and ``standby`` (a ``pg_basebackup -R`` of it, streaming). With
    ``synchronous=True`` every commit on the primary waits for the standby's flush."""

    def __init__(self, synchronous: bool = False) -> None:
        self.bindir = _bindir()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root without a 'postgres' OS user to run the "
                            "PostgreSQL servers as")
        self.root = Path(tempfile.mkdtemp(prefix="pgqueue-replica-"))
        if self.as_root:
            shutil.chown(self.root, "postgres")
        self.synchronous = synchronous
        self.primary = Node(self, "primary")
        self.standby = Node(self, "standby")

    def run(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        done = subprocess.run([*prefix, *cmd], capture_output=True, cwd=self.root, text=True)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): "
                               f"{done.stdout[-1500:]}{done.stderr[-1500:]}")

    @property
    def multi_host_dsn(self) -> str:
        """Both servers; libpq connects to whichever accepts writes."""
        return (f"host=127.0.0.1,127.0.0.1 port={self.primary.port},{self.standby.port} "
                "user=postgres dbname=postgres target_session_attrs=read-write")

    def build(self) -> None:
        self.run(str(self.bindir / "initdb"), "-D", str(self.primary.data), "-A", "trust",
                 "-U", "postgres", "--no-sync")
        self.primary.start()
        self.run(str(self.bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p",
                 str(self.primary.port), "-U", "postgres", "-D", str(self.standby.data),
                 "-R", "-X", "stream", "-c", "fast", "--no-sync")
        self.standby.start()
        wait_until(self.streaming, 30, interval=0.05, message="the standby streaming")
        if self.synchronous:
            # Set on the primary after the copy: a standby promoted with this setting would
            # wait on every commit for a standby of its own, which it does not have.
            self.primary.query("ALTER SYSTEM SET synchronous_standby_names = '*'")
            self.primary.query("ALTER SYSTEM SET synchronous_commit = on")
            self.primary.query("SELECT pg_reload_conf()")
            wait_until(lambda: self.primary.query(
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")[0][0],
                10, interval=0.05, message="the standby synchronous")

    def streaming(self) -> bool:
        rows = self.primary.query("SELECT count(*) FROM pg_stat_replication "
                                  "WHERE state = 'streaming'")
        return bool(rows and rows[0][0])

    def caught_up(self) -> bool:
        """True when the standby has replayed everything the primary wrote so far."""
        target = self.primary.query("SELECT pg_current_wal_lsn()")[0][0]
        rows = self.standby.query(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")
        return bool(rows[0][0])

    def pause_replay(self) -> None:
        self.standby.query("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self.standby.query("SELECT pg_wal_replay_resume()")

    def destroy(self) -> None:
        for node in (self.standby, self.primary):
            if node.running():
                with suppress(RuntimeError):
                    node.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"--- {n.name} ---\n{n.server_log()[-3000:]}"
                         for n in (self.primary, self.standby))


@contextmanager
def replica_pair(synchronous: bool = False) -> Iterator[ReplicaPair]:
    """A running pair, destroyed after (skips the test when it cannot be built here)."""
    pair = ReplicaPair(synchronous)
    try:
        pair.build()
        yield pair
    finally:
        pair.destroy()
