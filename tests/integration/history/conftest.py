"""What the tests of reads across the history's layouts share."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgqueue import App
from pgqueue.db import migrations


@pytest.fixture(params=["plain", "partitioned"])
def layout(request: pytest.FixtureRequest, app: App) -> str:
    """The test runs on both layouts of ``results``: as migrated, and partitioned by day."""
    if request.param == "partitioned":
        assert migrations.partition_results(app.dsn, app.schema)
    return str(request.param)


def partition_with_days(app: App, db: psycopg.Connection[Any],
                        days_ago: tuple[int, ...] = (1, 3, 10)) -> None:
    """Partition the app's ``results`` by day, with a partition for each of ``days_ago``
    (besides today's, tomorrow's and the DEFAULT one)."""
    assert migrations.partition_results(app.dsn, app.schema)
    for days in days_ago:
        db.execute("SELECT results_partition_add((now() AT TIME ZONE 'UTC')::date - %s)",
                   [days])
