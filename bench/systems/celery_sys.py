"""Celery on Redis: ``delay()``, a producer reused for "bulk", ``celery worker``."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from .. import env
from ..apps import celery_app
from .base import System

_CONFIG = re.compile(r"^(?:(\d+)x-)?(prefork|threads|solo|gevent|eventlet)-c(\d+)$")


class Adapter(System):
    name = "celery"

    def __init__(self) -> None:
        super().__init__()
        self.redis = redis.Redis.from_url(env.REDIS_URL)

    def setup(self) -> None:
        self.redis.flushdb()

    def reset(self) -> None:
        self.redis.flushdb()

    def _warm(self) -> None:
        celery_app.noop.delay()
        self.reset()

    def enqueue_single(self, n: int) -> float:
        delay = celery_app.noop.delay
        return self.timed(n, 1, lambda _: delay())

    def enqueue_bulk(self, n: int, batch: int) -> float:
        # Celery has no bulk send: the closest is one producer (one connection) reused.
        apply_async = celery_app.noop.apply_async

        def send(size: int) -> None:
            with celery_app.app.producer_or_acquire() as producer:
                for _ in range(size):
                    apply_async(producer=producer)

        return self.timed(n, batch, send)

    def prefill(self, n: int, variant: str = "noop") -> None:
        self.enqueue_bulk(n, 1000)

    @contextmanager
    def latency_sender(self) -> Iterator[Callable[[float], None]]:
        self._warm()
        delay = celery_app.mark.delay

        def send(sent_at: float) -> None:
            delay(sent_at)

        yield send

    def remaining(self) -> int:
        pipe = self.redis.pipeline()
        pipe.llen("default")
        pipe.hlen("unacked")
        queued, unacked = pipe.execute()
        return int(queued) + int(unacked)

    def server_pids(self) -> list[int]:
        return [int(self.redis.info("server")["process_id"])]

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
