"""The Celery rows of ``python -m bench --producers``, run in the peers' interpreter.

``python -m bench.producers_celery SYSTEM SECONDS`` (SYSTEM: ``celery`` for Redis,
``celery-rabbitmq``) starts 16 processes that each call ``noop.delay()`` in a loop for
SECONDS, exactly as pgqueue's processes row does (same loop, same barrier, same samples),
and prints one line ``BENCH-RESULT {...}`` with the same figures.

Celery on RabbitMQ publishes without confirms: ``delay()`` returns once the frames are in
the socket. As in the single-enqueue figure, the clock stops when the broker holds every
message sent (the wait after the loops is added to the seconds); on Redis an LPUSH is
answered before ``delay()`` returns. Every message sent is counted in the broker, so a
lost one fails the run instead of flattering it.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from typing import Any

from bench import systems
from bench.producers import PRODUCERS, call_figures, cpu_seconds, send_loop, thin
from bench.scenario import RESULT_PREFIX
from bench.systems.celery_base import load_app


def _producer(broker: str, ready: Any, seconds: float, out: Any) -> None:
    try:
        celery = load_app(broker)
        celery.noop.delay()  # connected and warm before the clock starts
        cpu = cpu_seconds()
        times = send_loop(celery.noop.delay, ready, seconds)
        cpu = cpu_seconds() - cpu
        celery.app.close()
    except Exception as error:  # the others stop at the barrier; the run reports it
        ready.abort()
        out.put(f"{type(error).__name__}: {error}")
        return
    out.put((len(times), thin(times), cpu))


def run(system: str, seconds: float) -> dict[str, Any]:
    adapter = systems.load(system)()
    try:
        adapter.setup()  # an empty queue: every message counted below was sent here
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        ready = ctx.Barrier(PRODUCERS)
        procs = [ctx.Process(target=_producer, args=(adapter.broker, ready, seconds, out))
                 for _ in range(PRODUCERS)]
        for p in procs:
            p.start()
        got = [out.get(timeout=300 + seconds) for _ in procs]
        errors = sorted((e for e in got if isinstance(e, str)),
                        key=lambda e: e.startswith("BrokenBarrierError"))
        if errors:
            raise RuntimeError(f"a producer failed: {errors[0]}")
        sent = sum(n for n, *_ in got) + PRODUCERS  # and one warm-up call each
        started = time.perf_counter()
        adapter._await_queued(sent)
        settle = time.perf_counter() - started
        held = adapter.remaining()
        if held < sent:
            raise RuntimeError(f"{sent - held} of {sent} messages sent are not in the broker")
        for p in procs:
            p.join(30)
        result = call_figures(got, seconds + settle, sum(cpu for *_, cpu in got))
        adapter.reset()
        return {**result, "settle_s": settle, "jobs": sent - PRODUCERS}
    finally:
        adapter.close()


def main(argv: list[str]) -> int:
    system, seconds = argv[0], float(argv[1])
    try:
        result = run(system, seconds)
    except Exception as error:
        result = {"error": f"{type(error).__name__}: {error}"}
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
