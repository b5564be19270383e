"""pgqueue: a Celery-compatible task queue whose only infrastructure is PostgreSQL."""

from __future__ import annotations

__version__ = "0.1.0"

from pgqueue import states
from pgqueue.app import App, Celery, current_app, shared_task
from pgqueue.canvas import (
    Signature,
    chain,
    chord,
    chunks,
    group,
    maybe_signature,
    signature,
    xmap,
    xstarmap,
)
from pgqueue.exceptions import (
    ChordError,
    ConfigurationError,
    DatabaseUnavailable,
    MaxRetriesExceededError,
    NotRegistered,
    PgQueueError,
    Retry,
    SchemaMissing,
    Snooze,
    SoftTimeLimitExceeded,
    TaskRevokedError,
    TimeLimitExceeded,
    WorkerLostError,
)
from pgqueue.result import AsyncResult, GroupResult, ResultSet
from pgqueue.schedules import crontab, schedule
from pgqueue.task import Task
from pgqueue.utils import uuid

__all__ = [
    # the application
    "App",
    "Celery",
    "current_app",
    "shared_task",
    "Task",
    # sending and results
    "AsyncResult",
    "GroupResult",
    "ResultSet",
    # canvas
    "Signature",
    "signature",
    "maybe_signature",
    "chain",
    "group",
    "chord",
    "chunks",
    "xmap",
    "xstarmap",
    "uuid",
    "states",
    # periodic tasks
    "crontab",
    "schedule",
    # errors
    "PgQueueError",
    "ConfigurationError",
    "DatabaseUnavailable",
    "SchemaMissing",
    "NotRegistered",
    "Retry",
    "Snooze",
    "MaxRetriesExceededError",
    "SoftTimeLimitExceeded",
    "TimeLimitExceeded",
    "TaskRevokedError",
    "ChordError",
    "WorkerLostError",
]
