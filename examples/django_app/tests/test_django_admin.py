"""The admin pages over pgqueue's tables and their actions."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import running_worker, wait_until

pytestmark = pytest.mark.usefixtures("shop")


@pytest.fixture
def admin_client() -> Any:
    from django.contrib.auth.models import User
    from django.test import Client

    User.objects.filter(username="admin").delete()
    user = User.objects.create_superuser("admin", "admin@example.com", "password")
    client = Client()
    client.force_login(user)
    return client


def act(client: Any, model: str, action: str, ids: list[str]) -> Any:
    return client.post(f"/admin/pgqueue/{model}/", {
        "action": action, "_selected_action": ids, "index": 0}, follow=True)


def test_the_pages_list_jobs_results_and_schedules(admin_client: Any) -> None:
    from orders.tasks import fulfil_order

    job = fulfil_order.delay(1)
    page = admin_client.get("/admin/pgqueue/job/")
    assert page.status_code == 200 and job.id.encode() in page.content
    assert admin_client.get(f"/admin/pgqueue/job/{job.id}/change/").status_code == 200
    assert admin_client.get("/admin/pgqueue/result/").status_code == 200
    assert admin_client.get("/admin/pgqueue/schedule/").status_code == 200


def test_headers_show_in_the_job_and_result_pages(admin_client: Any) -> None:
    from orders.tasks import fulfil_order

    from pgqueue.contrib.django import get_app
    from pgqueue.contrib.django.models import Job, Result

    job = fulfil_order.apply_async((999,), headers={"tenant": "acme-7"}, shadow="orders.pay")
    assert Job.objects.get(pk=job.id).headers == {"tenant": "acme-7", "shadow": "orders.pay"}
    assert b"acme-7" in admin_client.get(f"/admin/pgqueue/job/{job.id}/change/").content
    with running_worker(get_app()):
        wait_until(lambda: job.ready(), message="the job to end")
    assert Result.objects.get(pk=job.id).headers == {"tenant": "acme-7",
                                                     "shadow": "orders.pay"}
    page = admin_client.get(f"/admin/pgqueue/result/{job.id}/change/")
    assert b"acme-7" in page.content and b"orders.pay" in page.content


def test_revoke_ends_a_waiting_job_revoked(admin_client: Any) -> None:
    from orders.tasks import fulfil_order

    job = fulfil_order.apply_async((1,), countdown=3600)
    page = act(admin_client, "job", "revoke", [job.id])
    assert b"Revoked 1 job" in page.content
    assert job.state == "REVOKED"


def test_retry_runs_a_failed_job_again_under_its_id(admin_client: Any) -> None:
    from orders.models import Order
    from orders.tasks import fulfil_order

    from pgqueue.contrib.django import get_app

    job = fulfil_order.delay(999)  # no such order: the task fails
    with running_worker(get_app()):
        wait_until(lambda: job.state == "FAILURE", message="the job to fail")
        Order.objects.create(pk=999, item="late")
        page = act(admin_client, "result", "retry", [job.id])
        assert b"Sent 1 job" in page.content
        again = get_app().AsyncResult(job.id)  # a new handle: the old one cached FAILURE
        assert again.get(timeout=10) == "fulfilled order 999"


def test_schedules_can_be_disabled_and_enabled(admin_client: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from pgqueue.contrib.django.models import Schedule

    now = timezone.now()
    Schedule.objects.create(
        name="nightly", task="orders.tasks.expire_stale_orders", every=timedelta(days=1),
        timezone="UTC", enabled=True, catch_up=True, total_run_count=0, source="db",
        created_at=now, updated_at=now)
    act(admin_client, "schedule", "disable", ["nightly"])
    assert Schedule.objects.get(pk="nightly").enabled is False
    page = act(admin_client, "schedule", "enable", ["nightly"])
    assert b"Enabled 1 schedule" in page.content
    assert Schedule.objects.get(pk="nightly").enabled is True


def test_actions_need_the_change_permission() -> None:
    from django.contrib.auth.models import Permission, User
    from django.test import Client
    from orders.tasks import fulfil_order

    User.objects.filter(username="viewer").delete()
    viewer = User.objects.create_user("viewer", password="password", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_job"))
    client = Client()
    client.force_login(viewer)
    job = fulfil_order.apply_async((1,), countdown=3600)
    assert client.get("/admin/pgqueue/job/").status_code == 200
    act(client, "job", "revoke", [job.id])
    assert job.state == "PENDING"
