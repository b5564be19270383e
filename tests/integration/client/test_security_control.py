"""Authority lives in the database: a NOTIFY is only a wake-up (issue 12, point 6), and
nothing imports a module a row names (point 7)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import App
from pgqueue.contrib.abortable import AbortableAsyncResult, AbortableTask
from pgqueue.worker import Worker
from tests.conftest import running_worker, wait_until
from tests.login_roles import login_roles

REPO = Path(__file__).resolve().parents[3]


class Wakes:
    """Counts the control reads of a worker, so a test can wait until one has happened."""

    def __init__(self, worker: Worker) -> None:
        self.count = 0
        original = worker._apply_control

        def counted() -> None:
            original()
            self.count += 1

        worker._apply_control = counted  # type: ignore[method-assign]

    def after(self, action: Any) -> None:
        """Run ``action`` and wait until the worker has read control requests after it."""
        before = self.count
        action()
        wait_until(lambda: self.count > before, message="the worker to read its requests")


@pytest.fixture
def stranger(pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A session of a LOGIN role with no grant at all on the schema."""
    with login_roles(pg_dsn) as make, psycopg.connect(make(), autocommit=True) as conn:
        yield conn


def spinning_task(app: App) -> tuple[Any, threading.Event, threading.Event]:
    started, release = threading.Event(), threading.Event()

    @app.task
    def spin() -> str:
        started.set()
        while not release.is_set():
            time.sleep(0.01)
        return "ran to the end"

    return spin, started, release


def test_a_forged_terminate_notification_does_nothing_and_a_control_row_terminates(
    app: App, stranger: psycopg.Connection[Any]
) -> None:
    spin, started, release = spinning_task(app)
    with running_worker(app, concurrency=2) as worker:
        wakes = Wakes(worker)
        victim = spin.delay()
        assert started.wait(10)
        forged = json.dumps({"action": "terminate", "ids": [victim.id]})
        wakes.after(lambda: stranger.execute("SELECT pg_notify(%s, %s)",
                                             [app.queries.control_channel, forged]))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # nor can it write a row
            stranger.execute(f'INSERT INTO "{app.schema}".control_requests (action, job_ids) '
                             "VALUES ('terminate', %s::uuid[])", [[victim.id]])
        assert victim.state == "PENDING"  # still running
        release.set()
        assert victim.get(timeout=10) == "ran to the end"

        started.clear()
        release.clear()
        target = spin.delay()
        assert started.wait(10)
        target.revoke(terminate=True)  # the app's role may write control requests
        wait_until(target.ready, message="terminated job final")
        assert target.state == "REVOKED"


def test_a_forged_abort_notification_does_nothing_and_an_abort_request_aborts(
    app: App, stranger: psycopg.Connection[Any]
) -> None:
    started = threading.Event()
    checked = threading.Event()  # the task has looked at is_aborted() since it was cleared
    release = threading.Event()

    @app.task(bind=True, base=AbortableTask)
    def patient(self: AbortableTask) -> str:
        started.set()
        while not release.is_set():
            if self.is_aborted():
                return "aborted"
            checked.set()
            time.sleep(0.01)
        return "not aborted"

    with running_worker(app) as worker:
        wakes = Wakes(worker)
        job = patient.delay()
        assert started.wait(10)
        forged = json.dumps({"action": "abort", "ids": [job.id]})
        wakes.after(lambda: stranger.execute("SELECT pg_notify(%s, %s)",
                                             [app.queries.control_channel, forged]))
        checked.clear()
        assert checked.wait(10)  # it looked after the forged wake-up, and went on
        release.set()
        assert job.get(timeout=10) == "not aborted"

        started.clear()
        release.clear()
        aborted = patient.delay()
        assert started.wait(10)
        AbortableAsyncResult(aborted.id, app=app).abort()
        wait_until(aborted.ready, message="aborted job final")
        assert aborted.state == "REVOKED"


def _listener_backends(conn: psycopg.Connection[Any], schema: str) -> list[int]:
    rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                        [f"pgqueue:{schema}:listener"]).fetchall()
    return [r[0] for r in rows]


def test_a_request_missed_while_the_listener_was_away_is_applied_on_reconnect(
    app: App, db: psycopg.Connection[Any]
) -> None:
    spin, started, _ = spinning_task(app)
    with running_worker(app, concurrency=2) as worker:
        victim = spin.delay()
        assert started.wait(10)
        # No NOTIFY: the wake-up is lost, as it is while the listener is disconnected.
        db.execute("INSERT INTO control_requests (action, job_ids) VALUES ('terminate', %s)",
                   [[victim.id]])
        assert victim.state == "PENDING"
        pids = _listener_backends(db, app.schema)
        assert len(pids) == 1
        db.execute("SELECT pg_terminate_backend(%s)", pids)
        wait_until(victim.ready, message="the missed request applied after reconnecting")
        assert victim.state == "REVOKED"
        assert worker.listener.is_alive()


def test_a_request_committed_after_a_later_one_was_read_is_still_applied(
    app: App, db: psycopg.Connection[Any], pg_dsn: str
) -> None:
    """Ids are handed out at insert, commits come in any order: reading by id alone
    would skip the slow transaction's request for ever."""
    spin, started, _ = spinning_task(app)
    with running_worker(app, concurrency=2) as worker, \
            psycopg.connect(pg_dsn) as slow:
        wakes = Wakes(worker)
        victim = spin.delay()
        assert started.wait(10)
        slow.execute(f'INSERT INTO "{app.schema}".control_requests (action, job_ids) '
                     "VALUES ('terminate', %s::uuid[])", [[victim.id]])  # not committed
        wakes.after(lambda: app.control.request("terminate", ["01900000-0000-7000-8000-"
                                                              "000000000000"]))
        assert victim.state == "PENDING"
        wakes.after(lambda: (slow.execute("SELECT pg_notify(%s, '')",
                                          [app.queries.control_channel]), slow.commit()))
        wait_until(victim.ready, message="the late request applied")
        assert victim.state == "REVOKED"


def test_requests_from_before_the_worker_started_and_for_other_workers_are_not_applied(
    app: App
) -> None:
    spin, started, release = spinning_task(app)
    early = spin.delay()
    app.control.request("terminate", [early.id])  # before any worker runs
    with running_worker(app, concurrency=2) as worker:
        wakes = Wakes(worker)
        assert started.wait(10)
        wakes.after(lambda: app.control.request("terminate", [early.id],
                                                destination=["pgqueue@elsewhere"]))
        wakes.after(lambda: app.control.request("shutdown"))  # an action still to come
        release.set()
        assert early.get(timeout=10) == "ran to the end"


def test_old_requests_are_deleted_when_new_ones_are_written(
    app: App, db: psycopg.Connection[Any]
) -> None:
    db.execute("INSERT INTO control_requests (action, created_at) "
               "VALUES ('terminate', now() - interval '2 hours')")
    app.control.request("terminate", [])
    rows = db.execute("SELECT action, created_at > now() - interval '1 minute', requested_by "
                      "FROM control_requests").fetchall()
    assert rows == [("terminate", True, "postgres")]


# -- the Django backend never imports a module named by a row ---------------------------

DJANGO_SCRIPT = textwrap.dedent("""
    import sys
    import django
    from django.conf import settings

    from psycopg.conninfo import conninfo_to_dict

    dsn, schema, live_id, failed_id = sys.argv[1:5]
    info = conninfo_to_dict(dsn)
    settings.configure(
        INSTALLED_APPS=["pgqueue.contrib.django"],
        DATABASES={"default": {"ENGINE": "django.db.backends.postgresql",
                               "NAME": info["dbname"], "USER": info.get("user", ""),
                               "HOST": info.get("host", ""), "PORT": info.get("port", "")}},
        PGQUEUE_SCHEMA=schema, USE_TZ=True,
        TASKS={"default": {"BACKEND": "pgqueue.contrib.django.tasks.PgQueueBackend"}},
    )
    django.setup()
    try:
        from django.tasks import default_task_backend, task
    except ImportError:
        from django_tasks import default_task_backend, task

    @task
    def known():
        return 1

    try:
        default_task_backend.get_result(live_id)
        print("RESULT")
    except Exception as error:
        print("REFUSED", type(error).__name__, error)
    result = default_task_backend.get_result(failed_id)
    error = result.errors[0]
    print("ERROR-CLASS", error.exception_class_path, error.exception_class.__name__)
    print("IMPORTED" if "evilmod" in sys.modules else "NOT-IMPORTED")
""")


def test_django_get_result_does_not_import_the_module_a_row_names(
    pg_dsn: str, schema: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    pytest.importorskip("django")
    marker = tmp_path / "evilmod-was-imported"
    (tmp_path / "evilmod.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef x():\n    return 1\n")
    live_id = "01900000-0000-7000-8000-0000000000e1"
    failed_id = "01900000-0000-7000-8000-0000000000e2"
    db.execute("INSERT INTO jobs (id, queue, task) VALUES (%s, 'default', 'evilmod.x')",
               [live_id])
    db.execute("INSERT INTO results (id, queue, task, state, result, created_at) VALUES "
               "(%s, 'default', '__main__.known', 'FAILURE', %s, now())",
               [failed_id, json.dumps({"exc_type": "Boom", "exc_module": "evilmod",
                                       "exc_message": ["x"]})])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    run = subprocess.run([sys.executable, "-c", DJANGO_SCRIPT, pg_dsn, schema, live_id,
                          failed_id], capture_output=True, text=True, timeout=60, env=env,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("REFUSED TaskResultDoesNotExist")
    assert "'evilmod.x'" in lines[0] and "not a django.tasks task known" in lines[0]
    assert lines[1] == "ERROR-CLASS pgqueue.exceptions.TaskError TaskError"
    assert lines[2] == "NOT-IMPORTED"
    assert not marker.exists()
    # and the module was importable: the test would have seen an import
    subprocess.run([sys.executable, "-c", "import evilmod"], env=env, cwd=tmp_path,
                   check=True, timeout=30)
    assert marker.exists()
