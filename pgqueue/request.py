"""``self.request``: what a running task knows about its own job."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: Set while a task body runs; ``AsyncResult.get()`` refuses to block inside a task.
inside_task: ContextVar[bool] = ContextVar("pgqueue.inside_task", default=False)


@dataclass
class Request:
    """The context of the job being executed (Celery's ``Task.request``)."""

    id: str | None = None
    task: str | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: How many attempts ran before this one (retries and lost workers alike).
    retries: int = 0
    #: The attempt number of this run, starting at 1 (fences every write of the worker).
    attempt: int = 0
    eta: datetime | None = None
    expires: datetime | None = None
    hostname: str | None = None
    worker: str | None = None
    queue: str | None = None
    priority: int = 0
    parent_id: str | None = None
    root_id: str | None = None
    group: str | None = None
    ignore_result: bool = False
    is_eager: bool = False
    called_directly: bool = True
    time_limit: float | None = None
    soft_time_limit: float | None = None
    #: ``apply_async(headers=...)`` and what before_task_publish receivers added.
    headers: dict[str, Any] | None = None
    #: ``apply_async(shadow=...)``: the name shown in log lines.
    shadow: str | None = None
    #: ``apply_async(max_retries=...)``, when the sender gave one (``max_retries_given``):
    #: ``self.retry()`` obeys it over the task's.
    max_retries: int | None = None
    max_retries_given: bool = False

    @property
    def delivery_info(self) -> dict[str, Any]:
        return {"queue": self.queue, "priority": self.priority, "routing_key": self.queue}

    @property
    def timelimit(self) -> tuple[float | None, float | None]:
        return (self.time_limit, self.soft_time_limit)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)
