from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from .models import Order
from .tasks import build_report, fulfil_order, send_receipt


def index(request: HttpRequest) -> HttpResponse:
    orders = Order.objects.order_by("-id")[:20]
    return render(request, "orders/index.html", {"orders": orders})


@require_POST
def create_order(request: HttpRequest) -> HttpResponse:
    """The row and its jobs commit together, or not at all."""
    with transaction.atomic():
        order = Order.objects.create(item=request.POST.get("item", "book"),
                                     quantity=int(request.POST.get("quantity", 1)))
        # Inside atomic(), pgqueue enqueues on Django's connection: same transaction.
        job = fulfil_order.delay(order.pk)
        send_receipt.enqueue(order.pk)  # django.tasks, same transaction too
        order.job_id = job.id
        order.save(update_fields=["job_id"])
        if request.POST.get("fail"):
            # Anything failing after the enqueue rolls back the order AND its jobs:
            # no worker ever runs fulfil_order for an order that does not exist.
            raise RuntimeError("payment declined")
    return redirect("order_detail", order_id=order.pk)


def order_detail(request: HttpRequest, order_id: int) -> HttpResponse:
    order = get_object_or_404(Order, pk=order_id)
    return render(request, "orders/order.html", {"order": order,
                                                 "job": fulfil_order.AsyncResult(order.job_id)})


@require_POST
def start_report(request: HttpRequest) -> HttpResponse:
    job = build_report.delay(steps=int(request.POST.get("steps", 10)))
    return redirect("report_page", task_id=job.id)


def report_page(request: HttpRequest, task_id: str) -> HttpResponse:
    return render(request, "orders/report.html", {"task_id": task_id})


def report_status(request: HttpRequest, task_id: str) -> JsonResponse:
    job = build_report.AsyncResult(task_id)
    state, info = job.state, job.info
    if job.ready():  # it finished between the two reads: take the final reading
        state, info = job.state, job.info
    body = {"state": state, "current": 0, "total": 1}
    if state == "SUCCESS":
        body.update(info, result=info)
    elif state == "FAILURE":
        body["error"] = str(info)
    elif isinstance(info, dict):
        body.update(current=info.get("current", 0), total=info.get("total", 1))
    return JsonResponse(body)
