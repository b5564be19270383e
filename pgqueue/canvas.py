"""Signatures: a task name with arguments and options, to send now or on a schedule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgqueue.app import App
    from pgqueue.result import AsyncResult


class Signature(dict[str, Any]):
    """``task.s(1, 2)``: Celery's signature, a dict so it stores as JSON as it is."""

    def __init__(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        app: App | None = None,
    ) -> None:
        super().__init__(
            task=task, args=list(args), kwargs=dict(kwargs or {}), options=dict(options or {})
        )
        self._app = app

    @property
    def task(self) -> str:
        return str(self["task"])

    @property
    def args(self) -> list[Any]:
        return list(self["args"])

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self["kwargs"])

    @property
    def options(self) -> dict[str, Any]:
        return dict(self["options"])

    def set(self, **options: Any) -> Signature:
        self["options"].update(options)
        return self

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        from pgqueue.app import current_app

        app = self._app or current_app()
        merged = {**self.options, **options}
        return app.send_task(
            self.task, [*(args or ()), *self.args], {**self.kwargs, **(kwargs or {})}, **merged
        )

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.task}({', '.join(parts)})"


signature = Signature
