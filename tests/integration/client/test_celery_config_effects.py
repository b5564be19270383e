"""Celery-style configuration has its effect on real jobs: a Flask app's config with
Celery's old names and URL spellings, task_annotations, and a config module's imports."""

from __future__ import annotations

import sys
import textwrap
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import flask
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from pgqueue import App, TimeLimitExceeded
from tests.conftest import running_worker, wait_until


def as_url(dsn: str, scheme: str) -> str:
    """The test database as a URL with Celery's scheme, e.g. ``sqla+postgresql``."""
    params = conninfo_to_dict(dsn)
    auth = quote(str(params.get("user", "")))
    if params.get("password"):
        auth += ":" + quote(str(params["password"]))
    host = quote(str(params.get("host", "localhost")), safe="")
    return f"{scheme}://{auth}@{host}:{params.get('port', 5432)}/{params['dbname']}"


def test_a_flask_config_with_celerys_old_names_runs_a_task(pg_dsn: str, schema: str) -> None:
    web = flask.Flask("web")
    web.config.update(
        SECRET_KEY="not-a-setting", SQLALCHEMY_DATABASE_URI="sqlite:///app.db",
        CELERY_BROKER_URL=as_url(pg_dsn, "sqla+postgresql"),
        CELERY_RESULT_BACKEND=as_url(pg_dsn, "db+postgresql"),
        CELERY_DEFAULT_QUEUE="flask", CELERY_TASK_TRACK_STARTED=True,
    )
    app = App("flaskproj", schema=schema, set_as_current=False)
    app.conf.update(web.config)
    try:
        @app.task
        def greet(name: str) -> str:
            return f"hello {name}"

        with running_worker(app) as worker:
            assert worker.queues == ["flask"]  # CELERY_DEFAULT_QUEUE had its effect
            result = greet.delay("flask")
            assert result.get(timeout=10) == "hello flask"
        assert app.conf.SECRET_KEY == "not-a-setting"
    finally:
        app.close()


def test_annotated_time_limit_ends_the_job(app: App, db: psycopg.Connection[Any]) -> None:
    release = threading.Event()

    @app.task
    def stuck() -> str:
        release.wait(10)
        return "late"

    app.conf.task_annotations = {stuck.name: {"time_limit": 0.3}}
    try:
        with running_worker(app):
            result = stuck.delay()
            row = db.execute("SELECT options FROM jobs WHERE id = %s", [result.id]).fetchone()
            assert row is not None and row[0]["time_limit"] == 0.3  # what the worker reads
            with pytest.raises(TimeLimitExceeded):
                result.get(timeout=10)
    finally:
        release.set()


def test_annotated_retry_options_drive_retries(app: App) -> None:
    attempts: list[int] = []

    @app.task(bind=True)
    def flaky(self: Any) -> None:
        attempts.append(self.request.retries)
        raise KeyError("always")

    app.conf.task_annotations = [{"*": {"autoretry_for": [KeyError], "max_retries": 2,
                                        "default_retry_delay": 0}}]
    with running_worker(app):
        result = flaky.delay()
        with pytest.raises(KeyError):
            result.get(timeout=20)
    assert attempts == [0, 1, 2]  # two retries, then FAILURE, none waited 180 s


def test_star_annotation_routes_every_task_to_its_queue(app: App) -> None:
    @app.task
    def where() -> str:
        return "ran"

    app.conf.task_annotations = {"*": {"queue": "annotated"}}
    with running_worker(app, queues=["annotated"]):
        assert where.delay().get(timeout=10) == "ran"


TASKS_MODULE = '''
from pgqueue import shared_task

@shared_task(name="cfgeffects.double")
def double(x):
    return 2 * x
'''

CONFIG_MODULE = '''
import os
from datetime import timedelta
from pgqueue import crontab

imports = ("cfgeffects_tasks",)
result_expires = timedelta(minutes=5)
task_annotations = {"cfgeffects.double": {"max_retries": 0}}
beat_schedule = {"never": {"task": "cfgeffects.double", "schedule": crontab(minute=0),
                           "args": (1,)}}
'''


def test_a_config_module_with_imports_has_the_worker_load_the_tasks(
        app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cfgeffects_tasks.py").write_text(textwrap.dedent(TASKS_MODULE))
    (tmp_path / "cfgeffects_config.py").write_text(textwrap.dedent(CONFIG_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("pgqueue.app._shared_tasks", [])  # the shared task stays in this test
    for name in ("cfgeffects_tasks", "cfgeffects_config"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    app.config_from_object("cfgeffects_config")
    assert "cfgeffects.double" not in app.tasks  # imported when the worker starts
    with running_worker(app):
        wait_until(lambda: "cfgeffects.double" in app.tasks, message="imports loaded")
        assert app.tasks["cfgeffects.double"].max_retries == 0  # annotated when registered
        assert app.send_task("cfgeffects.double", [21]).get(timeout=10) == 42
