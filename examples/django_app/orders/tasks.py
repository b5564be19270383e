"""The shop's background work. Imported by every worker: pgqueue discovers `tasks.py`."""

import time
from datetime import timedelta

from django.utils import timezone

from pgqueue.contrib.django import app

from .models import Order

try:  # Django 6's tasks framework, or its backport on Django 5.2
    from django.tasks import task
except ImportError:
    from django_tasks import task


@app.task
def fulfil_order(order_id: int) -> str:
    """Runs after the view's transaction commits, so the order is always there."""
    order = Order.objects.get(pk=order_id)
    order.status = "fulfilled"
    order.fulfilled_at = timezone.now()
    order.save(update_fields=["status", "fulfilled_at"])
    return f"fulfilled order {order_id}"


@app.task
def expire_stale_orders(older_than_minutes: int = 30) -> int:
    """The periodic job (PGQUEUE_BEAT_SCHEDULE): orders never fulfilled expire."""
    cutoff = timezone.now() - timedelta(minutes=older_than_minutes)
    return Order.objects.filter(status="new", created_at__lt=cutoff).update(status="expired")


@app.task(bind=True)
def build_report(self, steps: int = 10, step_seconds: float = 0.2) -> dict:
    """A long task that publishes its progress; the report page shows it as a bar."""
    for done in range(steps):
        time.sleep(step_seconds)  # stands for real work
        self.update_state(state="PROGRESS", meta={"current": done + 1, "total": steps})
    return {"current": steps, "total": steps, "orders": Order.objects.count()}


@task(priority=50)
def send_receipt(order_id: int) -> str:
    """A django.tasks task: it runs on pgqueue's workers through PgQueueBackend."""
    Order.objects.filter(pk=order_id).update(receipt_sent=True)
    return f"receipt for order {order_id}"


@task(takes_context=True)
def notify_warehouse(context, order_id: int) -> int:
    """A django.tasks task that fails on its first attempt: OPTIONS MAX_RETRIES retries it."""
    if context.attempt == 1:
        raise ConnectionError("the warehouse did not answer")
    return context.attempt
