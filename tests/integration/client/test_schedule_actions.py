"""Run-now, enable and disable of a stored schedule (shared by `pgqueue schedule` and the
dashboard): hostile names and unreadable rows are refused in one line and change nothing."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgqueue import App
from pgqueue.client.schedule_actions import (
    ScheduleRefused,
    UnknownSchedule,
    run_now,
    set_enabled,
)

GARBAGE = ["", "\x00", "bad\nname", "tab\there", "\x7f", "\ud800", "y" * 201, None, 42,
           ["nightly"]]


@pytest.fixture
def nightly(db: psycopg.Connection[Any]) -> str:
    db.execute("""
        INSERT INTO schedules (name, task, args, options, cron, timezone, next_run_at)
        VALUES ('nightly', 'shop.report', '["daily"]', '{"queue": "reports"}', '30 2 * * *',
                'Europe/Berlin', now() + interval '5 hours')
        """)
    return "nightly"


def snapshot(db: psycopg.Connection[Any]) -> list[Any]:
    return [db.execute("SELECT name, enabled, next_run_at, last_run_at, total_run_count "
                       "FROM schedules ORDER BY name").fetchall(),
            db.execute("SELECT count(*) FROM jobs").fetchone()]


def one_line(error: pytest.ExceptionInfo[Exception], *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("name", GARBAGE, ids=repr)
def test_a_garbage_name_is_refused_before_any_statement(app: App, nightly: str, name: Any,
                                                        db: psycopg.Connection[Any]) -> None:
    before = snapshot(db)
    for action in (lambda: run_now(app, name), lambda: set_enabled(app, name, True),
                   lambda: set_enabled(app, name, False)):
        with pytest.raises(ScheduleRefused) as refused:
            action()
        assert not isinstance(refused.value, UnknownSchedule)
        one_line(refused, "schedule name must be a string of 1 to 200 characters")
    assert snapshot(db) == before


@pytest.mark.parametrize("name", ["ghost", "nightl", "NIGHTLY", "nightly ", "'; DROP TABLE x"])
def test_an_unknown_name_is_refused_by_name(app: App, nightly: str, name: str,
                                            db: psycopg.Connection[Any]) -> None:
    before = snapshot(db)
    for action in (lambda: run_now(app, name), lambda: set_enabled(app, name, True),
                   lambda: set_enabled(app, name, False)):
        with pytest.raises(UnknownSchedule) as unknown:
            action()
        assert str(unknown.value) == f"no schedule named {name!r}"
    assert snapshot(db) == before


def test_run_now_of_a_disabled_schedule_sends_once_and_leaves_it_disabled(
        app: App, nightly: str, db: psycopg.Connection[Any]) -> None:
    set_enabled(app, nightly, False)
    paused_until = db.execute("SELECT next_run_at FROM schedules").fetchone()
    job_id = run_now(app, nightly)
    job = db.execute("SELECT task, args, queue, unique_key FROM jobs WHERE id = %s",
                     [job_id]).fetchone()
    assert job is not None and job[:3] == ("shop.report", ["daily"], "reports")
    assert job[3].startswith("beat:nightly:run-now:")
    assert db.execute("SELECT enabled, next_run_at, total_run_count FROM schedules"
                      ).fetchone() == (False, paused_until[0], 1)
    assert run_now(app, nightly) != job_id  # each run-now is a job of its own


def test_enable_resumes_from_the_next_fire_and_keeps_an_enabled_schedules_time(
        app: App, nightly: str, db: psycopg.Connection[Any]) -> None:
    planned = db.execute("SELECT next_run_at FROM schedules").fetchone()
    set_enabled(app, nightly, True)  # already enabled: its next fire stays
    assert db.execute("SELECT next_run_at FROM schedules").fetchone() == planned
    set_enabled(app, nightly, False)
    db.execute("UPDATE schedules SET next_run_at = '2020-01-01'")
    set_enabled(app, nightly, True)
    assert db.execute("SELECT enabled, next_run_at > now() FROM schedules").fetchone() \
        == (True, True)


def test_an_unreadable_timetable_is_not_enabled(app: App, db: psycopg.Connection[Any]) -> None:
    db.execute("INSERT INTO schedules (name, task, cron, enabled) "
               "VALUES ('broken', 'shop.report', '99 * * * *', false)")
    db.execute("INSERT INTO schedules (name, task, cron, timezone, enabled) "
               "VALUES ('nowhere', 'shop.report', '0 * * * *', 'Mars/Olympus', false)")
    before = snapshot(db)
    for name in ("broken", "nowhere"):
        with pytest.raises(ScheduleRefused) as refused:
            set_enabled(app, name, True)
        one_line(refused, f"schedule {name!r} cannot be enabled", "--replace")
    set_enabled(app, "broken", False)  # disabling needs no timetable
    assert snapshot(db) == before


@pytest.mark.parametrize("options", ['{"priority": "high"}', '{"max_retry": 3}',
                                    '{"queue": ""}', '{"unique_for": -1}', '[1]'])
def test_run_now_refuses_options_it_cannot_send_and_sends_nothing(
        app: App, db: psycopg.Connection[Any], options: str) -> None:
    db.execute("INSERT INTO schedules (name, task, options, every) "
               "VALUES ('odd', 'shop.report', %s, '1 hour')", [options])
    before = snapshot(db)
    with pytest.raises(ScheduleRefused) as refused:
        run_now(app, "odd")
    one_line(refused, "schedule 'odd' cannot be sent")
    assert snapshot(db) == before
