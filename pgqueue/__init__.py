"""pgqueue: a Celery-compatible task queue whose only infrastructure is PostgreSQL."""

from __future__ import annotations

__version__ = "0.1.0"

from . import states
from .app import App, Celery, current_app, shared_task
from .canvas import Signature, signature
from .exceptions import (
    ConfigurationError,
    DatabaseUnavailable,
    MaxRetriesExceededError,
    NotRegistered,
    PgQueueError,
    Retry,
    SchemaMissing,
    SoftTimeLimitExceeded,
    TaskRevokedError,
    TimeLimitExceeded,
    WorkerLostError,
)
from .result import AsyncResult
from .schedules import crontab, schedule
from .task import Task
from .utils import uuid

__all__ = [
    # the application
    "App",
    "Celery",
    "current_app",
    "shared_task",
    "Task",
    # sending and results
    "AsyncResult",
    "Signature",
    "signature",
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
    "MaxRetriesExceededError",
    "SoftTimeLimitExceeded",
    "TimeLimitExceeded",
    "TaskRevokedError",
    "WorkerLostError",
]
