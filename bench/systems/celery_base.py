"""What both Celery systems share: ``delay()``, a producer reused for "bulk", ``celery worker``.

A broker's adapter names the broker (``bench.apps.celery_app`` picks its URL from
``BENCH_CELERY_BROKER``) and implements the broker's own parts: ``setup``, ``reset``,
``remaining`` and ``server_pids`` (and ``_await_queued`` if a send can return before the
broker holds the message).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from .. import env
from .base import System

_CONFIG = re.compile(r"^(?:(\d+)x-)?(prefork|threads|solo|gevent|eventlet)-c(\d+)$")


def load_app(broker: str) -> ModuleType:
    """``bench.apps.celery_app``, configured for ``broker`` (it reads the variable once)."""
    os.environ[env.CELERY_BROKER_ENV] = broker
    from ..apps import celery_app

    if broker != celery_app.BROKER:
        raise RuntimeError(f"bench.apps.celery_app was imported for {celery_app.BROKER}, "
                           f"not {broker}")
    return celery_app


class CelerySystem(System):
    #: ``bench.apps.celery_app.BROKERS`` key.
    broker = ""

    def __init__(self) -> None:
        super().__init__()
        self.celery = load_app(self.broker)

    # -- the broker's parts -------------------------------------------------------------
    def _await_queued(self, n: int) -> None:
        """Return once the broker holds the ``n`` messages just sent (counted in the time)."""

    # -- the same for every broker ------------------------------------------------------
    def _warm(self) -> None:
        self.celery.noop.delay()
        self._await_queued(1)
        self.reset()

    def timed(self, n: int, batch: int, send: Callable[[int], object]) -> float:
        seconds = super().timed(n, batch, send)
        started = time.perf_counter()
        self._await_queued(n)
        return seconds + time.perf_counter() - started

    def enqueue_single(self, n: int) -> float:
        delay = self.celery.noop.delay
        return self.timed(n, 1, lambda _: delay())

    def enqueue_bulk(self, n: int, batch: int) -> float:
        # Celery has no bulk send: the closest is one producer (one connection) reused.
        apply_async = self.celery.noop.apply_async
        app = self.celery.app

        def send(size: int) -> None:
            with app.producer_or_acquire() as producer:
                for _ in range(size):
                    apply_async(producer=producer)

        return self.timed(n, batch, send)

    def prefill(self, n: int, variant: str = "noop") -> None:
        self.enqueue_bulk(n, 1000)

    @contextmanager
    def latency_sender(self) -> Iterator[Callable[[float], None]]:
        self._warm()
        delay = self.celery.mark.delay

        def send(sent_at: float) -> None:
            delay(sent_at)

        yield send

    def worker_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return super().worker_env({env.CELERY_BROKER_ENV: self.broker, **(extra or {})})

    def worker_commands(self, config: str) -> list[list[str]]:
        match = _CONFIG.match(config)
        if not match:
            raise ValueError(f"unknown celery worker config {config!r}")
        processes, pool, concurrency = int(match.group(1) or 1), match.group(2), match.group(3)
        celery = str(Path(sys.executable).with_name("celery"))
        argv = [celery, "-A", "bench.apps.celery_app", "worker", "-P", pool, "-c", concurrency,
                "-Q", "default", "-l", "WARNING", "--without-heartbeat", "--without-gossip",
                "--without-mingle"]
        return [argv] * processes
