"""The example shop through Django's test client, with a real pgqueue worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import running_worker, wait_until

EXAMPLE = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("shop")


def jobs() -> list[Any]:
    from pgqueue.contrib.django.models import Job

    return list(Job.objects.all())


def test_a_committed_order_runs_its_task_which_sees_the_row() -> None:
    from django.test import Client
    from orders.models import Order

    from pgqueue.contrib.django import get_app

    response = Client().post("/orders/", {"item": "lamp", "quantity": 2})
    assert response.status_code == 302
    order = Order.objects.get()
    assert {job.task for job in jobs()} == {"orders.tasks.fulfil_order",
                                            "orders.tasks.send_receipt"}

    with running_worker(get_app()):
        wait_until(lambda: Order.objects.get(pk=order.pk).status == "fulfilled",
                   message="the worker to fulfil the order")
        wait_until(lambda: Order.objects.get(pk=order.pk).receipt_sent,
                   message="the django.tasks task to send the receipt")
    result = get_app().AsyncResult(Order.objects.get(pk=order.pk).job_id)
    assert result.get(timeout=10) == f"fulfilled order {order.pk}"

    page = Client().get(f"/orders/{order.pk}/")
    assert b"SUCCESS" in page.content and b"fulfilled" in page.content


def test_a_view_that_fails_after_enqueueing_leaves_neither_the_row_nor_the_jobs() -> None:
    from django.test import Client
    from orders.models import Order

    from pgqueue.contrib.django.models import Result

    client = Client(raise_request_exception=False)
    response = client.post("/orders/", {"item": "lamp", "fail": "1"})

    assert response.status_code == 500
    assert Order.objects.count() == 0
    assert jobs() == []
    assert Result.objects.count() == 0


def test_enqueue_outside_a_transaction_uses_pgqueues_own_connection() -> None:
    from orders.tasks import fulfil_order

    result = fulfil_order.delay(12345)
    assert [str(job.id) for job in jobs()] == [result.id]


def test_the_report_page_shows_progress_until_the_result() -> None:
    from django.test import Client

    from pgqueue.contrib.django import get_app

    client = Client()
    response = client.post("/reports/", {"steps": 5})
    assert response.status_code == 302
    page = client.get(response["Location"])
    assert b"<progress" in page.content
    status_url = response["Location"] + "status"

    seen: list[dict[str, Any]] = []

    def finished() -> bool:
        seen.append(client.get(status_url).json())
        return seen[-1]["state"] == "SUCCESS"

    assert seen == [] and client.get(status_url).json()["state"] == "PENDING"
    with running_worker(get_app()):
        wait_until(finished, timeout=20, message="the report to finish")
    progress = [s for s in seen if s["state"] == "PROGRESS"]
    assert progress, f"no PROGRESS state seen in {seen}"
    assert all(1 <= s["current"] <= s["total"] == 5 for s in progress)
    assert seen[-1]["current"] == seen[-1]["total"] == 5
    assert seen[-1]["result"]["orders"] == 0


def test_the_periodic_job_is_configured_and_expires_stale_orders() -> None:
    from django.utils import timezone
    from orders.models import Order
    from orders.tasks import expire_stale_orders

    from pgqueue.contrib.django import get_app

    entry = get_app().conf.beat_schedule["expire-stale-orders"]
    assert entry["task"] == expire_stale_orders.name

    stale = Order.objects.create(item="old")
    Order.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(hours=1))
    fresh = Order.objects.create(item="new")
    with running_worker(get_app()):
        result = expire_stale_orders.apply_async(kwargs=entry["kwargs"])
        assert result.get(timeout=10) == 1
    assert Order.objects.get(pk=stale.pk).status == "expired"
    assert Order.objects.get(pk=fresh.pk).status == "new"


def test_manage_py_pgqueue_worker_runs_the_projects_tasks(shop: dict[str, str]) -> None:
    from django.core.management import call_command
    from django.test import Client
    from orders.models import Order

    call_command("pgqueue", "migrate")  # the schema is there already: a no-op

    env = {**os.environ, **shop, "PYTHONPATH": os.pathsep.join(sys.path)}
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "pgqueue", "worker", "-c", "2", "-l", "WARNING"],
        cwd=EXAMPLE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        Client().post("/orders/", {"item": "chair"})
        order = Order.objects.get()
        wait_until(lambda: Order.objects.get(pk=order.pk).status == "fulfilled"
                   or worker.poll() is not None, timeout=90,
                   message="`manage.py pgqueue worker` to fulfil the order")
        assert worker.poll() is None, worker.communicate()[0].decode()
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=90)[0].decode()
    assert worker.returncode == 0, output
    assert Order.objects.get(pk=order.pk).status == "fulfilled"


def test_a_worker_with_beat_fires_the_periodic_job() -> None:
    from django.utils import timezone
    from orders.models import Order

    from pgqueue.contrib.django import get_app

    app = get_app()
    stale = Order.objects.create(item="old")
    Order.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(hours=1))
    configured = app.conf.beat_schedule
    # The project's entry, every half second instead of every minute.
    app.conf.beat_schedule = {name: {**entry, "schedule": 0.5}
                              for name, entry in configured.items()}
    try:
        with running_worker(app, beat=True):
            wait_until(lambda: Order.objects.get(pk=stale.pk).status == "expired",
                       timeout=20, message="beat to fire expire-stale-orders")
    finally:
        app.conf.beat_schedule = configured


def test_the_report_status_of_an_id_no_job_has_is_pending() -> None:
    """Any string is a task id, as in Celery: a bogus one answers PENDING, not HTTP 500."""
    from django.test import Client

    client = Client(raise_request_exception=False)
    for task_id in ("bogus", "not-a-uuid", "%C3%BCn%C3%AFc%C3%B8d%C3%A9", "x" * 600):
        response = client.get(f"/reports/{task_id}/status")
        assert response.status_code == 200, task_id
        assert response.json()["state"] == "PENDING"
