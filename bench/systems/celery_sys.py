"""Celery on Redis: ``delay()``, a producer reused for "bulk", ``celery worker``
(shared with Celery on RabbitMQ in ``celery_base``)."""

from __future__ import annotations

import redis

from .. import env
from .celery_base import CelerySystem


class Adapter(CelerySystem):
    name = "celery"
    broker = "redis"

    def __init__(self) -> None:
        super().__init__()
        self.redis = redis.Redis.from_url(env.REDIS_URL)

    def setup(self) -> None:
        self.redis.flushdb()

    def reset(self) -> None:
        self.redis.flushdb()

    def remaining(self) -> int:
        # An LPUSH is answered before delay() returns, so a sent message is counted at once;
        # with acks_late a delivered one stays in ``unacked`` until its task has run.
        pipe = self.redis.pipeline()
        pipe.llen("default")
        pipe.hlen("unacked")
        queued, unacked = pipe.execute()
        return int(queued) + int(unacked)

    def server_pids(self) -> list[int]:
        return [int(self.redis.info("server")["process_id"])]
