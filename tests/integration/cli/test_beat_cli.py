"""`pgqueue schedule ...` run for real: runtime schedules, and bad input refused at `add`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

PGQUEUE = str(Path(sys.executable).with_name("pgqueue"))
ROOT = Path(__file__).resolve().parents[3]
APP = "tests.acceptance.beat_apps.clockwork"


@pytest.fixture
def cli(pg_dsn: str, schema: str) -> Any:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
        env.update(PGQUEUE_DSN=pg_dsn, PGQUEUE_SCHEMA=schema)
        return subprocess.run([PGQUEUE, *args], capture_output=True, text=True, cwd=ROOT,
                              env=env, timeout=60)
    return run


def ok(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 0, run.stderr
    return run.stdout


def one_line_error(run: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert run.returncode == 1, run.stdout
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), run.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def row(db: psycopg.Connection[Any], name: str) -> dict[str, Any] | None:
    cur = db.execute("SELECT * FROM schedules WHERE name = %s", [name])
    found = cur.fetchone()
    return None if found is None else dict(zip([c.name for c in cur.description or []], found,
                                               strict=True))


def test_add_list_disable_enable_run_now_remove(cli: Any, db: psycopg.Connection[Any]) -> None:
    out = ok(cli("schedule", "add", "nightly", "clockwork.tick", "-A", APP, "--cron",
                 "30 2 * * *", "--timezone", "Europe/Berlin", "-a", '["night"]', "-Q", "slow",
                 "--priority", "3"))
    assert "schedule 'nightly' added: clockwork.tick 30 2 * * * (Europe/Berlin)" in out
    ok(cli("schedule", "add", "often", "any.task", "--every", "90", "--no-catch-up"))
    nightly = row(db, "nightly")
    assert nightly is not None
    assert (nightly["source"], nightly["args"], nightly["options"]) == (
        "db", ["night"], {"queue": "slow", "priority": 3})
    local = nightly["next_run_at"].astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute) in ((2, 30), (3, 0))
    assert row(db, "often")["catch_up"] is False  # type: ignore[index]

    table = ok(cli("schedule", "list"))
    assert "nightly" in table and "every 90s" in table and "Europe/Berlin" in table
    listed = json.loads(ok(cli("schedule", "list", "--json")))
    assert [s["name"] for s in listed] == ["nightly", "often"]

    ok(cli("schedule", "disable", "nightly"))
    assert row(db, "nightly")["enabled"] is False  # type: ignore[index]
    db.execute("UPDATE schedules SET next_run_at = '2020-01-01' WHERE name = 'nightly'")
    ok(cli("schedule", "enable", "nightly"))
    enabled = row(db, "nightly")
    assert enabled is not None and enabled["enabled"] is True
    assert enabled["next_run_at"] > datetime.now(timezone.utc)  # paused fires not replayed

    job_id = ok(cli("schedule", "run-now", "nightly")).strip()
    job = db.execute("SELECT task, args, queue, priority, unique_key FROM jobs WHERE id = %s",
                     [job_id]).fetchone()
    assert job is not None and job[:4] == ("clockwork.tick", ["night"], "slow", 3)
    assert job[4].startswith("beat:nightly:run-now:")
    assert row(db, "nightly")["total_run_count"] == 1  # type: ignore[index]

    ok(cli("schedule", "remove", "nightly"))
    assert row(db, "nightly") is None
    one_line_error(cli("schedule", "remove", "nightly"), "no schedule named 'nightly'")
    for command in ("run-now", "enable", "disable"):
        one_line_error(cli("schedule", command, "nightly"),
                       "no schedule named 'nightly'; see `pgqueue schedule list`")
        one_line_error(cli("schedule", command, "tab\there"),
                       "schedule name must be a string of 1 to 200 characters")


def test_add_refuses_a_name_that_exists_unless_replacing(cli: Any,
                                                         db: psycopg.Connection[Any]) -> None:
    ok(cli("schedule", "add", "job", "any.task", "--every", "10"))
    one_line_error(cli("schedule", "add", "job", "other.task", "--every", "10"),
                   "a schedule named 'job' already exists; pass --replace")
    ok(cli("schedule", "add", "job", "other.task", "--every", "20", "--replace"))
    replaced = row(db, "job")
    assert replaced is not None and replaced["task"] == "other.task"


@pytest.mark.parametrize(("args", "fragments"), [
    (["--cron", "61 * * * *"], ["crontab minute='61': 61 is out of range 0-59"]),
    (["--cron", "0 6 * *"], ["must have 5 fields"]),
    (["--cron", "0 0 1 * mon"], ["restricts both day-of-month and day-of-week"]),
    (["--cron", "0 6 * * *", "--timezone", "Europe/Berln"],
     ["unknown time zone 'Europe/Berln'; did you mean 'Europe/Berlin'?"]),
    (["--cron", "0 6 * * *", "--every", "5"], ["exactly one of --cron EXPR and --every"]),
    ([], ["exactly one of --cron EXPR and --every"]),
    (["--every", "5", "--args", "{oops"], ["--args must be JSON"]),
    (["--every", "5", "--options", '{"prioritty": 1}'],
     ["unknown option 'prioritty'; did you mean 'priority'?"]),
    (["--every", "5", "--options", '{"task_id": "x"}'], ["cannot be used on a schedule"]),
])
def test_bad_input_is_refused_at_add(cli: Any, db: psycopg.Connection[Any], args: list[str],
                                     fragments: list[str]) -> None:
    one_line_error(cli("schedule", "add", "bad", "clockwork.tick", "-A", APP, *args),
                   *fragments)
    assert row(db, "bad") is None


@pytest.mark.parametrize(("name", "fragments"), [
    ("x" * 201, ["schedule name must be a string of 1 to 200 characters", "(201 characters)"]),
    ("night\nly", ["without control characters", r"got 'night\nly'"]),
    ("\x1b[2J", ["without control characters", r"got '\x1b[2J'"]),
    ("", ["schedule name must be a string of 1 to 200 characters", "got ''"]),
])
def test_add_refuses_a_name_no_operator_command_accepts(
        cli: Any, db: psycopg.Connection[Any], name: str, fragments: list[str]) -> None:
    one_line_error(cli("schedule", "add", name, "clockwork.tick", "-A", APP, "--every", "5"),
                   *fragments)
    one_line_error(cli("schedule", "add", name, "any.task", "--every", "5", "--replace"),
                   *fragments)
    assert db.execute("SELECT count(*) FROM schedules").fetchone() == (0,)


def test_the_longest_name_allowed_is_added_and_managed(cli: Any,
                                                       db: psycopg.Connection[Any]) -> None:
    longest = "é" * 200
    ok(cli("schedule", "add", longest, "any.task", "--every", "5"))
    ok(cli("schedule", "disable", longest))
    ok(cli("schedule", "run-now", longest))
    assert db.execute("SELECT name, enabled FROM schedules").fetchall() == [(longest, False)]


def test_unknown_task_is_refused_when_the_app_is_given(cli: Any,
                                                       db: psycopg.Connection[Any]) -> None:
    one_line_error(cli("schedule", "add", "typo", "clockwork.tik", "-A", APP, "--every", "5"),
                   "no task named 'clockwork.tik'", "did you mean 'clockwork.tick'?")
    assert row(db, "typo") is None


def test_removing_a_code_schedule_says_it_comes_back(cli: Any,
                                                     db: psycopg.Connection[Any]) -> None:
    db.execute("INSERT INTO schedules (name, task, every, source) VALUES "
               "('coded', 'x', '1 minute', 'code')")
    run = cli("schedule", "remove", "coded")
    assert "removed" in ok(run)
    assert "defined in code" in run.stderr and "schedule disable" in run.stderr


def test_help_documents_every_option(cli: Any) -> None:
    beat_help = ok(cli("beat", "--help"))
    for option in ("--app", "--dsn", "--schema", "--hostname", "--loglevel", "--max-interval"):
        assert option in beat_help
    add_help = ok(cli("schedule", "add", "--help"))
    for option in ("--cron", "--every", "--args", "--kwargs", "--queue", "--priority",
                   "--expires", "--options", "--timezone", "--catch-up", "--disabled",
                   "--replace"):
        assert option in add_help
    assert "run-now" in ok(cli("schedule", "--help"))


@pytest.mark.parametrize("command", [["beat"], ["worker", "--beat"]])
def test_a_bad_beat_schedule_stops_the_scheduler_at_start(cli: Any, command: list[str],
                                                           db: Any) -> None:
    run = cli(*command, "-A", "tests.acceptance.beat_apps.misconfigured")
    one_line_error(run, "periodic task 'report': no task named 'misconfigured.reprot' is "
                        "registered; did you mean 'misconfigured.report'?")
    # checked before the worker registered: no row is left behind in `workers`
    assert db.execute("SELECT count(*) FROM workers").fetchone() == (0,)


@pytest.mark.parametrize("command", [["beat"], ["worker", "--beat"]])
def test_a_beat_schedule_name_no_command_accepts_stops_the_scheduler_at_start(
        cli: Any, command: list[str], db: Any) -> None:
    run = cli(*command, "-A", "tests.acceptance.beat_apps.badly_named")
    one_line_error(run, "schedule name must be a string of 1 to 200 characters without "
                        r"control characters, got 'report\nnightly'")
    # refused before anything was written: not the good schedule either, nor a worker
    assert db.execute("SELECT count(*) FROM schedules").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM workers").fetchone() == (0,)


def test_beat_without_the_tables_says_to_migrate(cli: Any, pg_dsn: str) -> None:
    run = cli("beat", "--schema", "no_such_schema_here")
    one_line_error(run, "run `pgqueue migrate`")
