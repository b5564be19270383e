"""Celery's command-line shapes: `pgqueue -A proj worker -l info`, its pool names, and
the process options (-n templates, --pidfile, --logfile), each honoured or refused in one
line naming the alternative."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pgqueue import App, ConfigurationError
from pgqueue.cli import main
from pgqueue.utils import hostname
from pgqueue.worker import Worker
from tests.acceptance.procs import pgqueue_command
from tests.conftest import wait_until

TASKS = "tests.acceptance.apps.core_app"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def unreachable_default_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that should have been refused fails fast instead of finding a database."""
    monkeypatch.setenv("PGQUEUE_DSN", "postgresql://postgres@127.0.0.1:1/postgres")
    monkeypatch.delenv("DATABASE_URL", raising=False)


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def assert_refused(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]


# -- refused before any worker runs ------------------------------------------------------

@pytest.mark.parametrize("pool", ["gevent", "eventlet", "GEVENT"])
def test_gevent_and_eventlet_are_refused_naming_the_alternative(pool: str) -> None:
    assert_refused(cli("-A", TASKS, "worker", "-P", pool), "is not supported",
                   "-P asyncio", "-P threads")


@pytest.mark.parametrize("pool", ["fork", "", "threads;rm"])
def test_an_unknown_pool_lists_the_pools(pool: str) -> None:
    assert_refused(cli("worker", "-A", TASKS, f"--pool={pool}"), "unknown pool",
                   "threads, processes, solo, asyncio")


@pytest.mark.parametrize("pool", [None, "threads", "asyncio", "solo"])
@pytest.mark.parametrize("option", ["--max-tasks-per-child=3", "--max-memory-per-child=1000"])
def test_recycling_children_is_refused_without_processes(pool: str | None, option: str) -> None:
    args = ["-A", TASKS, "worker", option] + (["-P", pool] if pool else [])
    assert_refused(cli(*args), "needs -P processes", "only -P processes recycles children")


def test_recycling_settings_are_refused_without_processes_too() -> None:
    app = App("shapes", dsn="postgresql://u@h/db", set_as_current=False,
              CELERYD_MAX_TASKS_PER_CHILD=10)
    with pytest.raises(ConfigurationError, match="max_tasks_per_child needs -P processes"):
        Worker(app)
    assert Worker(app, pool="prefork").max_tasks_per_child == 10


@pytest.mark.parametrize("setting", ["prefork", "PREFORK", "processes"])
def test_prefork_is_the_processes_pool(setting: str) -> None:
    app = App("shapes", dsn="postgresql://u@h/db", set_as_current=False, worker_pool=setting)
    assert Worker(app).pool_name == "processes"


@pytest.mark.parametrize("spelling", ["--detach", "-D"])
def test_detach_is_refused_naming_a_supervisor(spelling: str) -> None:
    result = cli("-A", TASKS, "worker", spelling)
    assert result.exit_code == 2  # a usage error, as every refused flag
    assert result.output.strip().startswith("Error: --detach is not supported")
    assert "systemd" in result.output and "supervisor" in result.output


@pytest.mark.parametrize("level", ["INFO", "info", "Info", "warning", "FATAL"])
def test_log_levels_in_any_case_reach_the_worker(level: str) -> None:
    # -P eventlet is refused after the options are parsed: reaching it proves -l was read.
    assert_refused(cli("-A", TASKS, "worker", "-l", level, "-P", "eventlet"),
                   "pool 'eventlet'")


def test_an_unknown_log_level_is_a_usage_error() -> None:
    result = cli("-A", TASKS, "worker", "-l", "verbose")
    assert result.exit_code == 2 and "verbose" in result.output


@pytest.mark.parametrize("value", ["fair", "default", "FAIR"])
def test_o_fair_is_accepted(value: str) -> None:
    assert_refused(cli("-A", TASKS, "worker", "-O", value, "-P", "gevent"), "pool 'gevent'")


def test_an_unknown_optimization_is_a_usage_error() -> None:
    assert cli("-A", TASKS, "worker", "-O", "fastest").exit_code == 2


def test_app_before_and_after_the_command_must_agree() -> None:
    assert_refused(cli("-A", TASKS, "worker", "-A", "other.module"),
                   "--app is given twice", TASKS, "other.module")
    assert_refused(cli("--dsn", "postgresql://a@h/x", "inspect", "--dsn", "postgresql://b@h/x"),
                   "--dsn is given twice")


@pytest.mark.parametrize("command", [["db", "status"], ["demo"]])
def test_an_option_before_a_command_that_cannot_use_it_is_refused(command: list[str]) -> None:
    assert_refused(cli("-A", TASKS, *command), f"pgqueue {command[0]} does not take -A")


def test_options_before_the_command_reach_it(pg_dsn: str, schema: str) -> None:
    result = cli("-A", TASKS, "-b", pg_dsn, "--schema", schema, "inspect", "queues", "--json")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "[]"
    result = cli("--dsn", "redis://h", "inspect")
    assert_refused(result, "redis:// URLs are not supported")


def test_the_group_options_win_over_the_environment(pg_dsn: str, schema: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGQUEUE_DSN", "postgresql://nobody@127.0.0.1:1/nothing")
    result = cli("--dsn", pg_dsn, "--schema", schema, "inspect", "--json")
    assert result.exit_code == 0, result.output


# -- a real worker with Celery's process options -------------------------------------------

@pytest.fixture
def env(pg_dsn: str, schema: str) -> dict[str, str]:
    return {**os.environ, "PGQUEUE_SCHEMA": schema,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[Any]]]:
    procs: list[subprocess.Popen[Any]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_celerys_worker_line_runs_with_pidfile_and_logfile(
        pg_dsn: str, schema: str, tmp_path: Path, env: dict[str, str],
        started: list[subprocess.Popen[Any]]) -> None:
    node = f"w1@{hostname()}"
    pidfile, logfile = tmp_path / "w1.pid", tmp_path / "w1.log"
    pidfile.write_text(f"{dead_pid()}\n")  # stale, from a worker that was killed
    proc = subprocess.Popen(
        [*pgqueue_command(), "-A", TASKS, "--dsn", pg_dsn, "worker", "-l", "info",
         "--pool=prefork", "-c", "1", "-E", "-O", "fair", "-n", "w1@%h",
         f"--pidfile={tmp_path}/%n.pid", f"--logfile={tmp_path}/%n%I.log"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started.append(proc)
    wait_until(lambda: proc.poll() is not None or
               (logfile.exists() and " ready" in logfile.read_text()),
               timeout=30, message="worker ready in its log file")
    assert proc.poll() is None, logfile.read_text() if logfile.exists() else proc.stdout
    assert pidfile.read_text().strip() == str(proc.pid)
    log = logfile.read_text()
    assert node in log and "pool: processes" in log
    assert "task events: on" in log  # -E

    app = App("shapes", dsn=pg_dsn, schema=schema, set_as_current=False)
    try:
        assert app.send_task("core.add", [2, 3]).get(timeout=20) == 5
    finally:
        app.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert not pidfile.exists()
    assert proc.stdout is not None and proc.stdout.read() == ""  # everything went to the file


def test_a_live_pidfile_refuses_a_second_worker(pg_dsn: str, tmp_path: Path,
                                                env: dict[str, str]) -> None:
    pidfile = tmp_path / "busy.pid"
    pidfile.write_text(f"{os.getpid()}\n")  # this test process: alive
    run = subprocess.run(
        [*pgqueue_command(), "worker", "-A", TASKS, "--dsn", pg_dsn, f"--pidfile={pidfile}"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert run.stderr.strip() == (
        f"Error: --pidfile {pidfile}: process {os.getpid()} is running; stop it first, or "
        "give this worker its own pidfile (e.g. --pidfile=/run/pgqueue/%n.pid with -n)")
    assert pidfile.read_text().strip() == str(os.getpid())  # left alone


@pytest.mark.parametrize("option", ["--pidfile", "--logfile"])
def test_an_unwritable_path_is_one_line(pg_dsn: str, tmp_path: Path, env: dict[str, str],
                                        option: str) -> None:
    path = tmp_path / "no" / "such" / "dir" / "w.x"
    run = subprocess.run(
        [*pgqueue_command(), "worker", "-A", TASKS, "--dsn", pg_dsn, f"{option}={path}"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert run.stderr.strip() == f"Error: {option} {path}: No such file or directory"


# -- the templates and the pidfile, directly ----------------------------------------------

def test_node_name_templates_expand_as_celerys() -> None:
    from pgqueue.cli.process import host_format, node_format

    host = hostname()
    assert host_format("w1@%h") == f"w1@{host}"
    assert host_format("w1@%n") == f"w1@{host.partition('.')[0]}"
    assert host_format("100%%-%x%") == "100%-%x%"  # %% is a %, unknown and lone % stay
    node = "w1@box.example.com"
    assert node_format("/run/%n.pid", node) == "/run/w1.pid"
    assert node_format("%p|%h|%d|%i|%I", node) == f"{node}|box.example.com|example.com|0|"
    assert node_format("%n.log", "box") == "box.log"  # a node name without @


@pytest.mark.parametrize("content", ["not a pid\n", "", "-5", "99999999999999999999"])
def test_a_pidfile_with_garbage_is_stale_and_replaced(tmp_path: Path, content: str) -> None:
    from pgqueue.cli.process import pidfile

    path = tmp_path / "w.pid"
    path.write_text(content)
    with pidfile(str(path)):
        assert path.read_text() == f"{os.getpid()}\n"
    assert not path.exists()


def test_a_pidfile_taken_over_by_another_process_is_left_to_it(tmp_path: Path) -> None:
    from pgqueue.cli.process import pidfile

    path = tmp_path / "w.pid"
    with pidfile(str(path)):
        path.write_text("12345\n")  # e.g. a second worker started after a stale check
    assert path.read_text() == "12345\n"
