"""Celery on RabbitMQ: the same adapter as Celery on Redis (``celery_base``), other broker.

Celery's defaults for RabbitMQ are kept: a durable classic queue ``default`` bound to a
durable direct exchange ``default``, persistent messages, no publisher confirms, and with
``acks_late`` a prefetch window of ``4 × concurrency`` unacknowledged messages per worker
process (global QoS on RabbitMQ 3.x).

Counting unfinished jobs: a passive ``queue.declare`` answers in one round trip with the
queue's ``message_count``, which on RabbitMQ is the *ready* messages only; a message
delivered to a worker but not yet acknowledged is not in it, and AMQP 0-9-1 has no way to
ask for the unacknowledged count (only the management plugin's HTTP API, refreshed every
5 s by default, and ``rabbitmqctl list_queues messages_unacknowledged``, which boots an
Erlang VM per call, have it). :meth:`Adapter.remaining` therefore undercounts by the
messages in the workers' prefetch windows: at most ``consumer_count × prefetch`` =
processes × 4 × concurrency (8 for ``prefork-c2``, 40 for ``threads-c10``). See
``bench/README.md`` ("How completion is observed") for what this does to the figures.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from .. import env
from .celery_base import CelerySystem

QUEUE = "default"


def rabbitmq_pids() -> list[int]:
    """The RabbitMQ server's Erlang VM(s): ``beam.smp`` processes started with ``-s rabbit``
    (``rabbitmqctl`` and other Erlang programs also run as ``beam.smp``, with other
    arguments)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().strip() != "beam.smp":
                continue
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(pair == (b"-s", b"rabbit") for pair in zip(argv, argv[1:], strict=False)):
            found.append(int(entry))
    return found


class Adapter(CelerySystem):
    name = "celery-rabbitmq"
    broker = "rabbitmq"

    def __init__(self) -> None:
        super().__init__()
        # The harness's own connection (no heartbeats: nothing here would send them).
        self.conn = self.celery.app.connection_for_write(heartbeat=0)
        self._pids: list[int] | None = None

    @property
    def channel(self) -> Any:
        return self.conn.default_channel

    def _declare(self) -> None:
        """Declare the queue exactly as Celery does (exchange, queue, binding)."""
        queue = self.celery.app.amqp.queues[QUEUE]
        queue(self.channel).declare()

    def _stat(self) -> Any:
        """``(queue, message_count, consumer_count)`` from a passive declare: one round trip."""
        return self.channel.queue_declare(queue=QUEUE, passive=True)

    def setup(self) -> None:
        self.channel.queue_delete(QUEUE)
        self._declare()

    def reset(self) -> None:
        # Only ready messages are purged; no worker runs when the scenarios reset.
        self._declare()
        self.channel.queue_purge(QUEUE)

    def _await_queued(self, n: int) -> None:
        # No publisher confirms (Celery's default): delay() returns once the frames are in
        # the socket. The enqueue figures stop the clock when the broker holds them all.
        deadline = time.monotonic() + 30
        while True:
            stat = self._stat()
            # A consumer (the latency worker) may already have taken the message.
            if stat.message_count >= n or stat.consumer_count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{stat.message_count} of {n} messages sent reached "
                                   f"queue {QUEUE!r} within 30s")
            time.sleep(0.0005)

    def remaining(self) -> int:
        # Ready messages only; up to consumer_count × prefetch more are delivered but not
        # yet acknowledged (module docstring).
        return int(self._stat().message_count)

    def server_pids(self) -> list[int]:
        if self._pids is None:
            self._pids = rabbitmq_pids()
            if not self._pids:
                env.log("celery-rabbitmq: no RabbitMQ beam.smp process in /proc (remote "
                        "broker?): its CPU is not measured")
        return self._pids

    def close(self) -> None:
        self.conn.release()
        super().close()
