"""Celery's signals: where error trackers, tracers and per-process set-up hook in.

``@task_failure.connect`` (or ``.connect(sender=..., weak=..., dispatch_uid=...)``) adds a
receiver; ``send`` calls each one as ``receiver(signal=..., sender=..., **named)`` and
returns ``[(receiver, response), ...]``. A receiver that raises is logged and its
exception stands in for its response: it never stops the sender (Celery's rule). Which
process sends each signal, its sender and its keyword arguments: docs/signals.md.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any

logger = logging.getLogger("pgqueue.signals")

Receiver = Callable[..., Any]


def _sender_key(sender: Any) -> Hashable:
    """What a receiver's ``sender=`` is matched on: a task and its name are the same
    sender (publish signals send the name, the others the task); other objects by
    identity, as Celery does."""
    if sender is None or isinstance(sender, (str, bytes)):
        return sender
    if any(c.__module__ == "pgqueue.task" and c.__name__ == "Task" for c in type(sender).__mro__):
        return str(sender.name)
    return id(sender)


def _receiver_key(receiver: Receiver) -> Hashable:
    if hasattr(receiver, "__func__") and hasattr(receiver, "__self__"):  # a bound method
        return (id(receiver.__self__), id(receiver.__func__))
    return id(receiver)


# Every signal, for a forked child: a receiver connected or dropped in another thread at
# the moment of the fork would leave that signal's lock held for good in the child.
_all_signals: weakref.WeakSet[Signal] = weakref.WeakSet()


def _fresh_locks_in_child() -> None:
    for each in list(_all_signals):
        each._lock = threading.Lock()


os.register_at_fork(after_in_child=_fresh_locks_in_child)


class Signal:
    """A signal receivers connect to (Celery's ``celery.utils.dispatch.Signal``)."""

    def __init__(self, name: str | None = None, providing_args: Any = None,
                 use_caching: bool = False) -> None:
        # providing_args and use_caching only document and tune Celery's signal; here
        # there is nothing to tune.
        self.name = name or "signal"
        self._lock = threading.Lock()
        _all_signals.add(self)
        self._receivers: list[tuple[tuple[Hashable, Hashable], Receiver | weakref.ref[Any]]] = []

    @property
    def receivers(self) -> list[Receiver]:
        """The live receivers, whatever their senders."""
        return [r for _, r in self._live(None, every=True)]

    def connect(self, receiver: Receiver | None = None, *, sender: Any = None,
                weak: bool = True, dispatch_uid: Hashable | None = None,
                **options: Any) -> Any:
        """``@signal.connect``, ``@signal.connect(sender=..., weak=False, dispatch_uid=...)``
        or ``signal.connect(receiver, ...)``; returns the receiver.

        ``sender`` limits the receiver to one sender: a task object or its name (either
        matches the other), another object by identity. With ``weak`` (the default, as
        in Celery) only a weak reference is kept: a receiver nothing else refers to (a
        lambda, say) is dropped. ``dispatch_uid`` connects a receiver once however often
        the connecting code runs."""
        if options:
            unknown = ", ".join(sorted(options))
            raise TypeError(f"{self.name}.connect: unknown option {unknown}; pgqueue takes "
                            "sender, weak and dispatch_uid (retry inside the receiver "
                            "instead of retry=True)")

        def add(fun: Receiver) -> Receiver:
            if not callable(fun):
                raise TypeError(f"{self.name}.connect: a receiver must be callable, "
                                f"not {type(fun).__name__}")
            key = (dispatch_uid if dispatch_uid is not None else _receiver_key(fun),
                   _sender_key(sender))
            ref: Receiver | weakref.ref[Any] = fun
            if weak:
                try:
                    ref = (weakref.WeakMethod(fun, self._forget)
                           if hasattr(fun, "__self__") and hasattr(fun, "__func__")
                           else weakref.ref(fun, self._forget))
                except TypeError:
                    raise TypeError(f"{self.name}.connect: {fun!r} cannot be weakly "
                                    "referenced; connect it with weak=False") from None
            with self._lock:
                if all(k != key for k, _ in self._receivers):
                    self._receivers.append((key, ref))
            return fun

        return add(receiver) if receiver is not None else add

    def disconnect(self, receiver: Receiver | None = None, sender: Any = None,
                   weak: bool = True, dispatch_uid: Hashable | None = None) -> bool:
        """Remove a receiver (as connected: same sender, or same ``dispatch_uid``)."""
        if dispatch_uid is None and receiver is None:
            raise TypeError(f"{self.name}.disconnect: give the receiver or its dispatch_uid")
        key = (dispatch_uid if dispatch_uid is not None else _receiver_key(receiver),  # type: ignore[arg-type]
               _sender_key(sender))
        with self._lock:
            before = len(self._receivers)
            self._receivers = [(k, r) for k, r in self._receivers if k != key]
            return len(self._receivers) < before

    def _forget(self, ref: Any) -> None:
        with self._lock:
            self._receivers = [(k, r) for k, r in self._receivers if r is not ref]

    def _live(self, sender: Any, every: bool = False) -> list[tuple[Hashable, Receiver]]:
        if not self._receivers:
            return []
        key = _sender_key(sender)
        live = []
        for (uid, wanted), ref in list(self._receivers):
            if every or wanted is None or wanted == key:
                fun = ref() if isinstance(ref, weakref.ref) else ref
                if fun is not None:
                    live.append((uid, fun))
        return live

    def has_receivers_for(self, sender: Any) -> bool:
        """Whether :meth:`send` would call anyone (senders skip building arguments)."""
        return bool(self._live(sender))

    def send(self, sender: Any = None, **named: Any) -> list[tuple[Receiver, Any]]:
        """Call every receiver of ``sender``; one that raises an ``Exception`` is logged
        and the exception is its response."""
        return self._send(sender, named, Exception)

    def send_contained(self, sender: Any = None, **named: Any) -> list[tuple[Receiver, Any]]:
        """:meth:`send` for the worker: a receiver's ``SystemExit``, ``KeyboardInterrupt``
        or any other ``BaseException`` is logged too, never stopping the worker."""
        return self._send(sender, named, BaseException)

    def _send(self, sender: Any, named: dict[str, Any],
              caught: type[BaseException]) -> list[tuple[Receiver, Any]]:
        responses: list[tuple[Receiver, Any]] = []
        for _, receiver in self._live(sender):
            try:
                response = receiver(signal=self, sender=sender, **named)
            except caught as exc:
                _log_failure(self, receiver, exc)
                response = exc
            responses.append((receiver, response))
        return responses

    def __repr__(self) -> str:
        return f"<Signal: {self.name}>"

    __str__ = __repr__


def _log_failure(signal: Signal, receiver: Receiver, exc: BaseException) -> None:
    try:
        logger.error("Signal handler %s of %s raised: %s", _name(receiver), signal.name,
                     f"{type(exc).__name__}: {exc}", exc_info=exc)
    except BaseException:  # an exception whose str() raises is still only logged
        logger.error("Signal handler of %s raised %s", signal.name, type(exc).__name__)


def _name(receiver: Receiver) -> str:
    return str(getattr(receiver, "__qualname__", None) or type(receiver).__name__)


# -- task signals: sent where the task is published or runs --------------------------------
before_task_publish = Signal("before_task_publish")
after_task_publish = Signal("after_task_publish")
task_received = Signal("task_received")
task_prerun = Signal("task_prerun")
task_postrun = Signal("task_postrun")
task_success = Signal("task_success")
task_failure = Signal("task_failure")
task_retry = Signal("task_retry")
task_revoked = Signal("task_revoked")
task_unknown = Signal("task_unknown")
task_rejected = Signal("task_rejected")
task_internal_error = Signal("task_internal_error")
# -- app ------------------------------------------------------------------------------------
import_modules = Signal("import_modules")
# -- worker ---------------------------------------------------------------------------------
celeryd_init = Signal("celeryd_init")
celeryd_after_setup = Signal("celeryd_after_setup")
worker_init = Signal("worker_init")
worker_ready = Signal("worker_ready")
worker_shutting_down = Signal("worker_shutting_down")
worker_shutdown = Signal("worker_shutdown")
worker_process_init = Signal("worker_process_init")
worker_process_shutdown = Signal("worker_process_shutdown")
heartbeat_sent = Signal("heartbeat_sent")
# -- beat -----------------------------------------------------------------------------------
beat_init = Signal("beat_init")
beat_embedded_init = Signal("beat_embedded_init")
# -- logging --------------------------------------------------------------------------------
setup_logging = Signal("setup_logging")
after_setup_logger = Signal("after_setup_logger")
after_setup_task_logger = Signal("after_setup_task_logger")

__all__ = [
    "Signal",
    "before_task_publish", "after_task_publish", "task_received", "task_prerun",
    "task_postrun", "task_success", "task_failure", "task_retry", "task_revoked",
    "task_unknown", "task_rejected", "task_internal_error", "import_modules",
    "celeryd_init", "celeryd_after_setup", "worker_init", "worker_ready",
    "worker_shutting_down", "worker_shutdown", "worker_process_init",
    "worker_process_shutdown", "heartbeat_sent", "beat_init", "beat_embedded_init",
    "setup_logging", "after_setup_logger", "after_setup_task_logger",
]
