"""Django's tasks framework (django.tasks, or the django-tasks backport) on PgQueueBackend."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import running_worker, wait_until

pytestmark = pytest.mark.usefixtures("shop")


def status_of(result: object) -> str:
    return str(result.status)  # type: ignore[attr-defined]


def test_priorities_map_onto_pgqueues_0_to_9_in_order() -> None:
    from pgqueue.contrib.django.tasks import pgqueue_priority

    mapped = [pgqueue_priority(p) for p in range(-100, 101)]
    assert mapped[0] == 0 and pgqueue_priority(0) == 4 and mapped[-1] == 9
    assert mapped == sorted(mapped)


def test_a_task_runs_on_a_worker_and_its_result_comes_back() -> None:
    from orders.models import Order
    from orders.tasks import send_receipt

    from pgqueue.contrib.django import get_app
    from pgqueue.contrib.django.models import Job

    order = Order.objects.create(item="pen")
    result = send_receipt.enqueue(order.pk)
    assert status_of(result) == "READY"
    job = Job.objects.get(pk=result.id)
    assert (job.task, job.queue, job.priority, job.args) == (
        "orders.tasks.send_receipt", "default", 6, [order.pk])

    fetched = send_receipt.get_result(result.id)
    assert status_of(fetched) == "READY" and fetched.args == [order.pk]

    with running_worker(get_app()):
        wait_until(lambda: send_receipt.get_result(result.id).is_finished,
                   message="the task to finish")
    result.refresh()
    assert status_of(result) == "SUCCESSFUL"
    assert result.return_value == f"receipt for order {order.pk}"
    assert result.attempts == 1 and result.finished_at is not None
    assert Order.objects.get(pk=order.pk).receipt_sent


def test_queue_priority_and_run_after_are_kept() -> None:
    from django.utils import timezone
    from orders.tasks import send_receipt

    from pgqueue.contrib.django.models import Job

    later = timezone.now() + timedelta(hours=1)
    result = send_receipt.using(queue_name="mail", priority=-100, run_after=later).enqueue(1)
    job = Job.objects.get(pk=result.id)
    assert (job.queue, job.priority, job.state) == ("mail", 0, "scheduled")
    assert abs((job.run_at - later).total_seconds()) < 0.01


def test_a_failing_task_is_retried_then_succeeds_with_its_context() -> None:
    from orders.tasks import notify_warehouse

    from pgqueue.contrib.django import get_app

    result = notify_warehouse.enqueue(7)
    with running_worker(get_app()):
        wait_until(lambda: notify_warehouse.get_result(result.id).is_finished, timeout=20,
                   message="the retried task to finish")
    result.refresh()
    assert status_of(result) == "SUCCESSFUL"
    assert result.return_value == 2  # the attempt the context reported
    assert result.attempts == 2


def test_a_task_that_keeps_failing_ends_failed_with_its_error() -> None:
    from orders.tasks import notify_warehouse

    from pgqueue.contrib.django import get_app

    backend = notify_warehouse.get_backend()
    saved = backend.max_retries
    backend.max_retries = 0
    try:
        result = notify_warehouse.enqueue(8)
        with running_worker(get_app()):
            wait_until(lambda: notify_warehouse.get_result(result.id).is_finished,
                       message="the task to fail")
    finally:
        backend.max_retries = saved
    result.refresh()
    assert status_of(result) == "FAILED"
    assert [e.exception_class for e in result.errors] == [ConnectionError]
    assert "the warehouse did not answer" in result.errors[0].traceback
    with pytest.raises(ValueError):
        result.return_value  # noqa: B018


def test_an_unknown_result_id_does_not_exist() -> None:
    from orders.tasks import send_receipt

    from pgqueue.contrib.django.tasks import TaskResultDoesNotExist

    with pytest.raises(TaskResultDoesNotExist):
        send_receipt.get_result("not-a-uuid")
    with pytest.raises(TaskResultDoesNotExist):
        send_receipt.get_result("0190b4a2-0000-7000-8000-000000000000")
    for result_id in ("", "x" * 600, "a\x00b"):  # ids no job can have
        with pytest.raises(TaskResultDoesNotExist):
            send_receipt.get_result(result_id)


def test_enqueue_inside_atomic_rolls_back_with_the_transaction() -> None:
    from django.db import transaction
    from orders.tasks import send_receipt

    from pgqueue.contrib.django.models import Job

    with pytest.raises(RuntimeError), transaction.atomic():
        result = send_receipt.enqueue(1)
        assert Job.objects.filter(pk=result.id).exists()  # visible inside the transaction
        raise RuntimeError("roll back")
    assert not Job.objects.filter(pk=result.id).exists()
