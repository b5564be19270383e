"""System adapters. Each module imports only what its own system needs."""

from __future__ import annotations

import importlib

#: name -> (module, the interpreter it runs in: "pgqueue" or "peers")
SYSTEMS = {
    "pgqueue": ("bench.systems.pgqueue_sys", "pgqueue"),
    "celery": ("bench.systems.celery_sys", "peers"),
    "celery-rabbitmq": ("bench.systems.celery_rabbitmq_sys", "peers"),
    "procrastinate": ("bench.systems.procrastinate_sys", "peers"),
    "pgqueuer": ("bench.systems.pgqueuer_sys", "peers"),
}


def load(name: str) -> type:
    module, _ = SYSTEMS[name]
    return importlib.import_module(module).Adapter  # type: ignore[no-any-return]
