"""The Celery+Redis side of ``python -m bench.canvas``, run in the peers' interpreter:
prints one JSON line (``BENCH-RESULT {...}``) with the seconds of each figure."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import env


def main(argv: list[str]) -> int:
    members, steps, processes, concurrency = (int(a) for a in argv[:4])
    timeout = int(argv[4]) if len(argv) > 4 else 1800
    import redis
    from celery import chain, chord, group

    from bench.apps import celery_canvas_app as capp

    for url in (env.REDIS_URL, capp.BACKEND_URL):
        redis.Redis.from_url(url).flushdb()
    celery = str(Path(sys.executable).with_name("celery"))
    argv_worker = [celery, "-A", "bench.apps.celery_canvas_app", "worker", "-P", "prefork",
                   "-c", str(concurrency), "-Q", "canvas", "-l", "WARNING",
                   "--without-heartbeat", "--without-gossip", "--without-mingle"]
    log = env.RESULTS_DIR / "logs" / "canvas-celery-workers.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    out = log.open("ab")
    procs = [subprocess.Popen(argv_worker, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                              start_new_session=True) for _ in range(processes)]
    one, total = capp.one, capp.total
    figures: dict[str, float] = {}
    try:
        one.delay().get(timeout=120)  # the workers are up
        latencies = []
        for _ in range(50):
            sent = time.perf_counter()
            one.delay().get(timeout=60)
            latencies.append(time.perf_counter() - sent)
        figures["single_p50"] = statistics.median(latencies)
        started = time.perf_counter()
        result = chain(*(one.s() for _ in range(steps))).apply_async()
        assert result.get(timeout=timeout) == 1
        figures["chain_step"] = (time.perf_counter() - started) / steps
        started = time.perf_counter()
        results = group(one.s() for _ in range(members)).apply_async()
        figures["group_enqueue"] = time.perf_counter() - started
        results.get(timeout=timeout)
        started = time.perf_counter()
        result = chord((one.s() for _ in range(members)), total.s()).apply_async()
        try:
            assert result.get(timeout=timeout) == members
            figures["chord"] = time.perf_counter() - started
        except Exception as error:  # a chord that does not finish is a figure too
            figures["chord_error"] = f"{type(error).__name__} after {timeout} s"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        out.close()
    print("BENCH-RESULT " + json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
