"""Where everything lives, and making it exist: the peers' virtualenv, Redis, the database.

Every address can be overridden from the environment (``BENCH_PG_DSN``, ``BENCH_DB``,
``BENCH_REDIS_URL``, ``BENCH_AMQP_URL``), so the harness runs against other servers
unchanged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
PEERS_VENV = BENCH_DIR / ".venv-peers"
PEERS_REQUIREMENTS = BENCH_DIR / "requirements-peers.txt"

#: The server; the harness creates and owns database ``BENCH_DB`` on it.
SERVER_DSN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASE = os.environ.get("BENCH_DB", "bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")

#: Which broker ``bench.apps.celery_app`` uses: "redis" (default) or "rabbitmq". Set by
#: the Celery adapters for their own process and for the workers they start.
CELERY_BROKER_ENV = "BENCH_CELERY_BROKER"

#: Connections of the harness itself carry this name; CPU accounting leaves them out.
HARNESS_APPNAME = "bench-harness"

SCHEMAS = {
    "pgqueue": "bench_pgq",
    "procrastinate": "bench_procrastinate",
    "pgqueuer": "bench_pgqueuer",
    "reference": "bench_ref",
}


def database_dsn(harness: bool = False) -> str:
    """DSN of the bench database; ``harness=True`` tags the connection as the harness's."""
    parsed = urlparse(SERVER_DSN)
    dsn = parsed._replace(path=f"/{DATABASE}").geturl()
    if harness:
        dsn += ("&" if parsed.query else "?") + f"application_name={HARNESS_APPNAME}"
    return dsn


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the peers' virtualenv ---------------------------------------------------------------
def _requirements_digest() -> str:
    return hashlib.sha256(PEERS_REQUIREMENTS.read_bytes()).hexdigest()[:16]


def peers_python() -> Path:
    return PEERS_VENV / "bin" / "python"


def ensure_peers_venv() -> Path:
    """Create ``bench/.venv-peers`` and install the peers from PyPI, once per requirements."""
    marker = PEERS_VENV / ".bench-requirements"
    digest = _requirements_digest()
    if peers_python().exists() and marker.exists() and marker.read_text() == digest:
        return peers_python()
    log(f"installing the peers into {PEERS_VENV} (once; takes a minute)")
    base = getattr(sys, "_base_executable", sys.executable)
    if not peers_python().exists():
        subprocess.run([base, "-m", "venv", str(PEERS_VENV)], check=True)
    subprocess.run([str(peers_python()), "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", "-r", str(PEERS_REQUIREMENTS)], check=True)
    marker.write_text(digest)
    return peers_python()


def pgqueue_python() -> Path:
    """The interpreter that runs pgqueue: this one (pgqueue must be importable from it)."""
    return Path(sys.executable)


# -- Redis --------------------------------------------------------------------------------
def _redis_address() -> tuple[str, int]:
    parsed = urlparse(REDIS_URL)
    return parsed.hostname or "127.0.0.1", parsed.port or 6379


def redis_ping() -> bool:
    host, port = _redis_address()
    try:
        with socket.create_connection((host, port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def ensure_redis() -> None:
    """Use the Redis answering at ``BENCH_REDIS_URL``; start one on loopback if none does."""
    if redis_ping():
        return
    host, port = _redis_address()
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit(f"bench: no Redis answers at {host}:{port} and redis-server is not "
                         "installed: `apt-get install redis-server`, or set BENCH_REDIS_URL")
    log(f"starting redis-server on {host}:{port}")
    subprocess.run([server, "--daemonize", "yes", "--bind", host, "--port", str(port),
                    "--save", "", "--appendonly", "no"], check=True)
    deadline = time.monotonic() + 10
    while not redis_ping():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: redis-server did not answer on {host}:{port} within 10s")
        time.sleep(0.1)


# -- RabbitMQ -----------------------------------------------------------------------------
def amqp_address() -> tuple[str, int]:
    parsed = urlparse(AMQP_URL)
    return parsed.hostname or "127.0.0.1", parsed.port or 5672


def amqp_ping() -> bool:
    """True if an AMQP 0-9-1 broker answers at ``BENCH_AMQP_URL`` (the protocol header is
    answered with a ``connection.start`` method frame, type 1). The harness never starts
    RabbitMQ itself: without one, the ``celery-rabbitmq`` system is skipped."""
    try:
        with socket.create_connection(amqp_address(), timeout=1) as conn:
            conn.sendall(b"AMQP\x00\x00\x09\x01")
            return conn.recv(1) == b"\x01"
    except OSError:
        return False


# -- Postgres -----------------------------------------------------------------------------
def ensure_database() -> None:
    """Create the bench database if it is missing (nothing else of the server is touched)."""
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(SERVER_DSN, autocommit=True, connect_timeout=5) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                 [DATABASE]).fetchone()
            if not found:
                log(f"creating database {DATABASE}")
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    except psycopg.OperationalError as e:
        raise SystemExit(f"bench: cannot reach PostgreSQL at {SERVER_DSN} ({e}); start it "
                         "or set BENCH_PG_DSN") from None


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for scenario and worker processes: the repo on the path, quiet Python."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    env["BENCH_DSN"] = database_dsn()
    env["BENCH_REDIS_URL"] = REDIS_URL
    env["BENCH_AMQP_URL"] = AMQP_URL
    env.pop("VIRTUAL_ENV", None)
    env.update(extra or {})
    return env
