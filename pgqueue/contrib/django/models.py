"""Read-only Django models over pgqueue's tables, for the admin and for ORM queries.

Unmanaged: pgqueue's own migrations create and change these tables. They live in the
``PGQUEUE_SCHEMA`` schema (default ``pgqueue``) of the ``PGQUEUE_DATABASE`` database.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from pgqueue.contrib.django.conf import get_app, setting


def table(name: str) -> str:
    """``"schema"."table"``: Django quotes a db_table that is already quoted as it is."""
    schema = get_app().schema.replace('"', '""')
    return f'"{schema}"."{name}"'


class QueueManager(models.Manager):
    """Reads and writes go to ``PGQUEUE_DATABASE``, whatever the project's routers say."""

    def get_queryset(self) -> models.QuerySet[Any]:
        return super().get_queryset().using(self._db or setting("PGQUEUE_DATABASE"))


class Job(models.Model):
    """A job that has not finished: waiting (queued, scheduled, retry) or running (started)."""

    id = models.UUIDField(primary_key=True)
    queue = models.TextField()
    task = models.TextField()
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    state = models.TextField()
    priority = models.SmallIntegerField()
    run_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True)
    attempt = models.IntegerField()
    max_retries = models.IntegerField(null=True)
    lease_expires_at = models.DateTimeField(null=True)
    worker = models.TextField(null=True)
    unique_key = models.TextField(null=True)
    parent_id = models.UUIDField(null=True)
    root_id = models.UUIDField(null=True)
    group_id = models.UUIDField(null=True)
    ignore_result = models.BooleanField()
    progress_state = models.TextField(null=True)
    meta = models.JSONField(null=True)
    last_error = models.TextField(null=True)
    options = models.JSONField(default=dict)
    #: ``headers=`` and what before_task_publish receivers added (``shadow=`` too).
    headers = models.JSONField(null=True)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True)

    objects = QueueManager()

    class Meta:
        managed = False
        db_table = table("jobs")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.task}[{self.id}]"


class Result(models.Model):
    """The final outcome of a job: SUCCESS, FAILURE or REVOKED."""

    id = models.UUIDField(primary_key=True)
    queue = models.TextField()
    task = models.TextField()
    state = models.TextField()
    result = models.JSONField(null=True)
    error = models.TextField(null=True)
    traceback = models.TextField(null=True)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    priority = models.SmallIntegerField()
    attempt = models.IntegerField()
    worker = models.TextField(null=True)
    unique_key = models.TextField(null=True)
    parent_id = models.UUIDField(null=True)
    root_id = models.UUIDField(null=True)
    group_id = models.UUIDField(null=True)
    meta = models.JSONField(null=True)
    #: The job's headers, kept with its outcome.
    headers = models.JSONField(null=True)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField()

    objects = QueueManager()

    class Meta:
        managed = False
        db_table = table("results")
        ordering = ["-finished_at"]

    def __str__(self) -> str:
        return f"{self.task}[{self.id}] {self.state}"


class Schedule(models.Model):
    """A periodic entry fired by ``pgqueue beat`` (or ``worker --beat``)."""

    name = models.TextField(primary_key=True)
    task = models.TextField()
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    options = models.JSONField(default=dict)
    cron = models.TextField(null=True)
    every = models.DurationField(null=True)
    timezone = models.TextField()
    enabled = models.BooleanField()
    catch_up = models.BooleanField()
    next_run_at = models.DateTimeField(null=True)
    last_run_at = models.DateTimeField(null=True)
    total_run_count = models.BigIntegerField()
    source = models.TextField()
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    objects = QueueManager()

    class Meta:
        managed = False
        db_table = table("schedules")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
