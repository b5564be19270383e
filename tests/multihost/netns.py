"""A private network for multi-host tests: one Linux bridge in the root namespace, a
PostgreSQL cluster listening on the bridge's address, and "hosts" that are network
namespaces joined to the bridge by veth pairs.

Everything is named after the test process' pid (parallel runs don't collide) and torn
down by :meth:`Lab.close`. Needs root, ``ip`` (iproute2) and the PostgreSQL server binaries;
:func:`lab_or_skip` skips the test with the reason when any of them is missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _ip(*args: str, netns: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    cmd = [*prefix, *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if check and done.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")
    return done


@dataclass
class Host:
    """One namespace: ``veth`` is the host-side end in the root namespace (cut it there:
    the namespace sees no FIN, its packets just stop), ``eth0`` the end inside."""

    name: str
    netns: str
    veth: str
    address: str

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _ip(*cmd, netns=self.netns, check=check)

    def cut(self) -> None:
        _ip("ip", "link", "set", self.veth, "down")

    def restore(self) -> None:
        _ip("ip", "link", "set", self.veth, "up")

    def drop_outgoing(self) -> None:
        """A half-open link: the namespace's packets are dropped on their way out (a
        zero-length queue), the server's still arrive, and no one sends a FIN or RST."""
        self.run("tc", "qdisc", "replace", "dev", "eth0", "root", "pfifo", "limit", "0")

    def stop_dropping(self) -> None:
        self.run("tc", "qdisc", "del", "dev", "eth0", "root", check=False)


@dataclass
class Lab:
    tag: str = field(default_factory=lambda: f"pq{os.getpid() % 10**7}")
    hosts: list[Host] = field(default_factory=list)
    cluster_root: Path | None = None
    port: int = 0
    bindir: Path | None = None

    def __post_init__(self) -> None:
        # 10.213.N.0/24 with N from the pid: parallel runs use different subnets.
        self.subnet = f"10.213.{os.getpid() % 250 + 1}"
        self.bridge = f"{self.tag}br"
        self.server_ip = f"{self.subnet}.1"

    # --- network -------------------------------------------------------------------
    def build(self, count: int) -> None:
        _ip("ip", "link", "add", self.bridge, "type", "bridge")
        _ip("ip", "addr", "add", f"{self.server_ip}/24", "dev", self.bridge)
        _ip("ip", "link", "set", self.bridge, "up")
        for i in range(count):
            host = Host(name=f"host{i}", netns=f"{self.tag}h{i}", veth=f"{self.tag}v{i}",
                        address=f"{self.subnet}.{10 + i}")
            _ip("ip", "netns", "add", host.netns)
            self.hosts.append(host)
            _ip("ip", "link", "add", host.veth, "type", "veth", "peer", "name", f"{self.tag}p{i}")
            _ip("ip", "link", "set", f"{self.tag}p{i}", "netns", host.netns)
            host.run("ip", "link", "set", f"{self.tag}p{i}", "name", "eth0")
            host.run("ip", "addr", "add", f"{host.address}/24", "dev", "eth0")
            host.run("ip", "link", "set", "eth0", "up")
            host.run("ip", "link", "set", "lo", "up")
            _ip("ip", "link", "set", host.veth, "master", self.bridge)
            _ip("ip", "link", "set", host.veth, "up")

    # --- PostgreSQL on the bridge address ------------------------------------------------
    def _pg(self, *cmd: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True,
                       capture_output=True, cwd=self.cluster_root)

    def start_postgres(self) -> None:
        assert self.bindir is not None
        self.cluster_root = Path(tempfile.mkdtemp(prefix=f"pgqueue-{self.tag}-"))
        shutil.chown(self.cluster_root, "postgres")
        data = self.cluster_root / "data"
        self._pg(str(self.bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                 "--no-sync")
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {self.subnet}.0/24 trust\n")
        self.port = _free_port(self.server_ip)
        # The server gives up on a vanished client too (its sessions, and any row lock
        # an open transaction holds), within about the same bound as the workers.
        options = (f"-p {self.port} -k {self.cluster_root} -c listen_addresses={self.server_ip} "
                   "-c fsync=off -c synchronous_commit=off -c max_connections=200 "
                   "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 "
                   "-c tcp_keepalives_count=3 -c tcp_user_timeout=8000")
        self._pg(str(self.bindir / "pg_ctl"), "-D", str(data), "-l",
                 str(self.cluster_root / "server.log"), "-o", options, "-w", "start")

    def dsn(self, **params: object) -> str:
        extra = "".join(f" {k}={v}" for k, v in params.items())
        return (f"host={self.server_ip} port={self.port} user=postgres dbname=postgres"
                f" connect_timeout=5{extra}")

    # --- teardown ------------------------------------------------------------------
    def close(self) -> None:
        if self.cluster_root is not None and self.bindir is not None:
            with suppress(subprocess.CalledProcessError):
                self._pg(str(self.bindir / "pg_ctl"), "-D", str(self.cluster_root / "data"),
                         "-m", "immediate", "-w", "stop")
            shutil.rmtree(self.cluster_root, ignore_errors=True)
        for host in self.hosts:
            _ip("ip", "link", "del", host.veth, check=False)
            _ip("ip", "netns", "del", host.netns, check=False)
        _ip("ip", "link", "del", self.bridge, check=False)


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def lab_or_skip(hosts: int) -> Lab:
    """A built lab with Postgres running, or a pytest skip that says what is missing."""
    if sys.platform != "linux":
        pytest.skip("multi-host tests need Linux network namespaces")
    if os.geteuid() != 0:
        pytest.skip("multi-host tests need root (they create network namespaces and a bridge)")
    if shutil.which("ip") is None or shutil.which("runuser") is None:
        pytest.skip("multi-host tests need iproute2's `ip` and `runuser`")
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.skip("multi-host tests need the PostgreSQL server binaries (initdb, pg_ctl)")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("multi-host tests run their PostgreSQL as user `postgres`, which is missing")
    probe = f"pqprobe{os.getpid() % 10**7}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"`ip netns add` failed here: {done.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    lab = Lab(bindir=Path(bins[-1]).parent)
    try:
        lab.build(hosts)
        lab.start_postgres()
    except BaseException:
        lab.close()
        raise
    return lab


class NetnsWorker:
    """``ip netns exec NS pgqueue worker ...``, output captured to a file with the time
    (monotonic, seconds) each line arrived, so a test can date what the worker noticed."""

    def __init__(self, host: Host, dsn: str, schema: str, app: str, *args: str) -> None:
        self.host = host
        self.log_path = Path(tempfile.mkstemp(prefix=f"pgqueue-{host.name}-", suffix=".log")[1])
        env = {**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": schema,
               "PGQ_TEST_HOST": host.name, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join([str(HERE / "apps"),
                                              os.environ.get("PYTHONPATH", "")])}
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, sys.executable, "-m", "pgqueue", "worker",
             "-A", app, "-n", f"{host.name}@lab", *args],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while " ready" not in self.output():
            assert self.proc.poll() is None, f"worker exited early:\n{self.output()}"
            assert time.monotonic() < deadline, f"worker not ready:\n{self.output()}"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        self.log.close()
