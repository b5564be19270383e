"""Runs the example project on a schema of its own in the test database.

Django's tables and pgqueue's live in one fresh schema per test process (the connection's
search_path points there), so these tests run beside the rest of the suite and in
parallel (pytest-xdist).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

EXAMPLE = Path(__file__).resolve().parent.parent
REPO = EXAMPLE.parent.parent
for path in (str(EXAMPLE), str(REPO)):
    if path not in sys.path:
        sys.path.insert(0, path)

NEEDS = "the Django example's tests need `pip install '.[dev]'` (or '.[django]')"
pytest.importorskip("django", reason=NEEDS)
if importlib.util.find_spec("django.tasks") is None:  # Django 5.2: the backport
    pytest.importorskip("django_tasks", reason=NEEDS)

from tests.pgserver import fresh_schema, test_database  # noqa: E402


@pytest.fixture(scope="session")
def example_database() -> Iterator[dict[str, str]]:
    """Set Django up on a fresh schema; yields the environment a worker process needs."""
    # empty: Django's own migrate (pgqueue's schema migration included) fills it
    with test_database() as base, fresh_schema(base, "django_example_", migrate=False) as schema:
        env = {
            "DATABASE_URL": make_conninfo(base, options=f"-c search_path={schema}"),
            "PGQUEUE_SCHEMA": schema,
            "DJANGO_SETTINGS_MODULE": "shop.settings",
        }
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            import django
            from django.core.management import call_command

            django.setup()
            call_command("migrate", verbosity=0)
        finally:  # the settings are read; leave no variable for other tests to trip on
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        yield env
        from django.db import connections

        from pgqueue.contrib.django.conf import reset_app

        reset_app()
        connections.close_all()


@pytest.fixture
def shop(example_database: dict[str, str]) -> Iterator[dict[str, str]]:
    """A clean shop for each test: no orders, no jobs, no results, no schedules."""
    from django.db import connection

    schema = example_database["PGQUEUE_SCHEMA"]
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("TRUNCATE orders_order, {}.jobs, {}.results, {}.schedules")
                       .format(*[sql.Identifier(schema)] * 3).as_string(None))
    yield example_database
