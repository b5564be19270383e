"""Fairness of a task rate limit with real `pgqueue worker` processes: the jobs of a
rate-limited task that must wait do not hold back the jobs queued behind them, and
they themselves start in their own order, at their rate, while other work goes by."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgqueue import App
from tests.acceptance.procs import workers
from tests.conftest import wait_until
from tests.integration.flow.test_fleet import finished, fleet_app, start_fleet
from tests.integration.flow.test_restart import worst_window

pytestmark = pytest.mark.acceptance
__all__ = ["fleet_app"]  # the fixture, shared with test_fleet


def test_a_rate_limited_task_steps_aside_and_keeps_its_order(
        fleet_app: App, pg_dsn: str, schema: str, db: psycopg.Connection[Any]) -> None:
    fleet_app.send_task("flow_tasks.limited", [-1])  # the queue exists for the limit
    db.execute("DELETE FROM jobs")
    fleet_app.control.rate_limit("flow_tasks.limited", "5/s")
    limited = 30
    fleet_app.send_many("flow_tasks.limited", [[i] for i in range(limited)])
    # Queued after every limited job, in the same queue, at the same priority.
    fleet_app.send_many("flow_tasks.span", [["plain", 10]] * 40)
    with workers() as started:
        start_fleet(started, pg_dsn, schema, count=2)
        wait_until(lambda: finished(db, "flow_tasks.span") == 40, timeout=30,
                   interval=0.05, message="the plain jobs behind the limited ones")
        # 30 jobs at 5/s take 6 s: the plain ones did not wait for them.
        assert finished(db, "flow_tasks.limited") < limited // 2
        # More plain work while the limited task goes on: it is not starved either.
        fleet_app.send_many("flow_tasks.span", [["plain", 10]] * 40)
        wait_until(lambda: finished(db, "flow_tasks.limited") == limited, timeout=60,
                   interval=0.1, message="every limited job")
        wait_until(lambda: finished(db, "flow_tasks.span") == 80, timeout=30)
    rows = db.execute("SELECT (args->>0)::int, extract(epoch FROM started_at)::float8"
                      " FROM results WHERE task = 'flow_tasks.limited'"
                      " ORDER BY started_at, id").fetchall()
    assert [i for i, _ in rows] == list(range(limited)), "limited jobs ran out of order"
    starts = [t for _, t in rows]
    assert worst_window(starts) <= 6
    assert starts[-1] - starts[0] >= (limited - 1) / 5 * 0.9
