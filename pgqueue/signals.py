"""A minimal signal, enough for Celery's ``@app.on_after_configure.connect``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Signal:
    def __init__(self, name: str) -> None:
        self.name = name
        self.receivers: list[Callable[..., Any]] = []

    def connect(self, receiver: Callable[..., Any] | None = None, **options: Any) -> Any:
        """Use as ``@signal.connect`` or ``@signal.connect(weak=False)``."""

        def add(fun: Callable[..., Any]) -> Callable[..., Any]:
            if fun not in self.receivers:
                self.receivers.append(fun)
            return fun

        return add(receiver) if receiver is not None else add

    def send(self, sender: Any = None, **kwargs: Any) -> list[Any]:
        return [receiver(sender=sender, **kwargs) for receiver in list(self.receivers)]

    def __repr__(self) -> str:
        return f"<Signal: {self.name}>"
