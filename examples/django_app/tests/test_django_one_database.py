"""`manage.py pgqueue worker` works on the database Django enqueues on, or refuses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.conftest import wait_until

EXAMPLE = Path(__file__).resolve().parent.parent


def manage_py_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "pgqueue", "worker", "-c", "1", "-l", "INFO"],
        cwd=EXAMPLE, env={**os.environ, **env, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_pgqueue_dsn_naming_the_same_database_runs_djangos_jobs(shop: dict[str, str]) -> None:
    from django.test import Client
    from orders.models import Order

    info = conninfo_to_dict(shop["DATABASE_URL"])
    info.pop("options", None)  # the same database reached without the search_path
    same = make_conninfo("", **{**info, "password": "sekrit-pw"})
    worker = manage_py_worker({**shop, "PGQUEUE_DSN": same})
    try:
        Client().post("/orders/", {"item": "chair"})
        order = Order.objects.get()
        wait_until(lambda: Order.objects.get(pk=order.pk).status == "fulfilled"
                   or worker.poll() is not None, timeout=90,
                   message="the worker given $PGQUEUE_DSN to fulfil the order")
        assert worker.poll() is None, worker.communicate()[0].decode()
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=90)[0].decode()
    assert worker.returncode == 0, output
    banner = f"@{info['host']}:{info.get('port') or 5432}/{info['dbname']}"
    assert f"database: {info['user']}{banner}" in output, output
    assert "sekrit-pw" not in output


@pytest.mark.parametrize("change", [{"dbname": "not_the_django_db"}, {"port": "5439"},
                                    {"host": "db.invalid"}])
def test_pgqueue_dsn_naming_another_database_is_refused_in_one_line(
        shop: dict[str, str], change: dict[str, str]) -> None:
    info = conninfo_to_dict(shop["DATABASE_URL"])
    other = make_conninfo("", **{**info, **change, "password": "sekrit-pw"})
    worker = manage_py_worker({**shop, "PGQUEUE_DSN": other})
    output = worker.communicate(timeout=90)[0].decode()
    assert worker.returncode == 1, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    assert "not the Django project's queue database" in output
    assert "Traceback" not in output and "sekrit-pw" not in output


def test_a_malformed_pgqueue_dsn_is_one_line(shop: dict[str, str]) -> None:
    worker = manage_py_worker({**shop, "PGQUEUE_DSN": "mysql://root:sekrit-pw@db/x"})
    output = worker.communicate(timeout=90)[0].decode()
    assert worker.returncode == 1, output
    assert output.strip().startswith("Error: ") and len(output.strip().splitlines()) == 1
    assert "sekrit-pw" not in output


def test_the_django_side_ignores_a_worker_only_dsn_in_its_own_process(
        shop: dict[str, str]) -> None:
    from pgqueue.contrib.django import get_app
    from pgqueue.exceptions import ConfigurationError

    app = get_app()
    django_dsn = app.dsn
    app.conf.dsn = make_conninfo(django_dsn, dbname="elsewhere")  # what --dsn would do
    try:
        with pytest.raises(ConfigurationError, match="not the Django project's queue"):
            _ = app.dsn
    finally:
        app.conf.dsn = app.settings_dsn
    assert app.dsn == django_dsn
