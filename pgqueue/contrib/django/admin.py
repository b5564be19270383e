"""Admin pages for jobs, results and schedules, with retry, revoke and enable/disable."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.db.models.functions import Now
from django.http import HttpRequest

from pgqueue import limits
from pgqueue.contrib.django.conf import get_app, setting
from pgqueue.contrib.django.models import Job, Result, Schedule


class ReadOnlyAdmin(admin.ModelAdmin):
    """pgqueue writes these rows; the admin looks at them and acts through actions, which
    need the model's "change" permission."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_act_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return bool(request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}"))


class TaskIdAdmin(ReadOnlyAdmin):
    """Jobs and results by task id: any string, as the sender gave it ("order-42") or
    the row's uuid. The search box finds the job whose id the term is, exactly, and the
    tasks whose name contains it."""

    search_fields = ("task",)

    @admin.display(description="task id", ordering="id")
    def task_id_shown(self, obj: Job | Result) -> str:
        return obj.known_id

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any],
                           search_term: str) -> tuple[QuerySet[Any], bool]:
        found, duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        row_id = limits.row_id(term) if term else None  # the one mapping of ids to rows
        if row_id is not None:
            found = found | queryset.filter(pk=row_id)
        return found, duplicates


@admin.register(Job)
class JobAdmin(TaskIdAdmin):
    list_display = ("task_id_shown", "task", "queue", "state", "priority", "attempt", "run_at",
                    "worker", "progress_state")
    list_filter = ("state", "queue", "task")
    date_hierarchy = "created_at"
    actions = ["revoke"]

    @admin.action(permissions=["act"], description="Revoke the selected jobs (those not running)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        ids = [str(pk) for pk in queryset.values_list("id", flat=True)]
        revoked = get_app().control.revoke(ids)
        skipped = len(ids) - len(revoked)
        self.message_user(request, f"Revoked {len(revoked)} job(s).", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} job(s) were running or already finished "
                                       "and were left alone.", messages.WARNING)


@admin.register(Result)
class ResultAdmin(TaskIdAdmin):
    list_display = ("task_id_shown", "task", "queue", "state", "attempt", "finished_at",
                    "worker", "error")
    list_filter = ("state", "queue", "task")
    date_hierarchy = "finished_at"
    actions = ["retry"]

    @admin.action(permissions=["act"], description="Retry the selected failed or revoked jobs")
    def retry(self, request: HttpRequest, queryset: QuerySet[Result]) -> None:
        """Run each job again under its own id: its result row goes, a new job takes its
        place, in one transaction, so a waiting ``AsyncResult`` sees the new outcome."""
        app = get_app()
        total, count = queryset.count(), 0
        with transaction.atomic(using=setting("PGQUEUE_DATABASE")):
            finished = queryset.filter(state__in=["FAILURE", "REVOKED"]).select_for_update()
            for result in finished:
                Result.objects.filter(pk=result.pk).delete()
                app.send_task(result.task, result.args, result.kwargs, task_id=result.known_id,
                              queue=result.queue, priority=result.priority)
                count += 1
        self.message_user(request, f"Sent {count} job(s) again.", messages.SUCCESS)
        if count < total:
            self.message_user(request, f"{total - count} job(s) had succeeded and were left "
                                       "alone.", messages.WARNING)


@admin.register(Schedule)
class ScheduleAdmin(ReadOnlyAdmin):
    list_display = ("name", "task", "cron", "every", "timezone", "enabled", "next_run_at",
                    "last_run_at", "total_run_count", "source")
    list_filter = ("enabled", "source")
    search_fields = ("name", "task")
    actions = ["enable", "disable"]

    @admin.action(permissions=["act"], description="Enable the selected schedules")
    def enable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        updated = queryset.update(enabled=True, updated_at=Now())
        self.message_user(request, f"Enabled {updated} schedule(s).", messages.SUCCESS)

    @admin.action(permissions=["act"], description="Disable the selected schedules")
    def disable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        updated = queryset.update(enabled=False, updated_at=Now())
        self.message_user(request, f"Disabled {updated} schedule(s).", messages.SUCCESS)
