"""The worker's side of remote control: each command of ``app.control`` /
``pgqueue control`` / ``pgqueue inspect`` that only a worker can answer or carry out.

Requests come from :class:`pgqueue.control.ControlInbox` in the listener thread. Each
command is a method ``cmd_<name>(**arguments)`` returning Celery's reply shape
(``{"ok": ...}``, ``{"error": ...}`` or the answer itself); one more command is one more
method (and its name in ``pgqueue.control.COMMANDS``). Arguments are checked here again:
a request row may have been written by plain SQL. Whatever a command raises becomes an
``{"error": ...}`` reply; nothing a request holds stops the listener.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import platform
import re
import resource
import sys
import time
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pgqueue import __version__, limits
from pgqueue.config import DEFAULTS
from pgqueue.control import COMMANDS, ControlRequest
from pgqueue.db.connection import redact_dsn

if TYPE_CHECKING:
    from pgqueue.worker.worker import Worker

logger = logging.getLogger("pgqueue.worker")

# Settings whose values are never shown (Celery's rule for `inspect conf`).
_HIDDEN = re.compile(r"API|TOKEN|KEY|SECRET|PASS|SIGNATURE|DATABASE", re.IGNORECASE)
_URLS = ("dsn", "broker_url", "result_backend", "database_url")


class CommandError(Exception):
    """A command that cannot be carried out here; its message is the error reply."""


def jsonable(value: Any) -> Any:
    """``value`` as JSON can carry it (durations in seconds, the rest as repr)."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return repr(value)


def _number(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CommandError(f"{name} must be a whole number of at least {minimum}, "
                           f"got {limits.show(value)}")
    return value


def _seconds(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise CommandError(f"{name} must be a number of seconds above 0 or null, "
                           f"got {limits.show(value)}")
    return float(value)


class RemoteControl:
    """Carries out the remote-control commands addressed to one worker."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.started = time.monotonic()
        self.total: Counter[str] = Counter()  # jobs received, by task (stats)

    # -- dispatch ---------------------------------------------------------------------------
    def handle(self, request: ControlRequest) -> None:
        """Carry out ``request`` and, when it asks, write the reply."""
        arguments = dict(request.arguments)
        wants_reply = arguments.pop("reply", False) is True
        reply = self.answer(request.action, arguments, request.malformed)
        if wants_reply:
            self._write(request.id, reply)

    def answer(self, action: str, arguments: dict[str, Any], malformed: Any = None) -> Any:
        if malformed is not None:
            return {"error": f"{action}: arguments must be a JSON object, got "
                             f"{limits.show(malformed)}"}
        if action not in COMMANDS:
            logger.warning("ignoring control request: unknown command %r", action)
            return {"error": f"unknown command {action!r}"}
        method = getattr(self, f"cmd_{action}")
        try:
            return method(**arguments)
        except TypeError as error:  # arguments that are not the command's
            return {"error": f"{action}: bad arguments {sorted(arguments)}: {error}"}
        except CommandError as error:
            return {"error": str(error)}
        except Exception as error:
            logger.exception("control command %s failed", action)
            return {"error": f"{action} failed: {type(error).__name__}: {error}"}

    def _write(self, request_id: int, reply: Any) -> None:
        worker = self.worker
        try:
            text = json.dumps(jsonable(reply))
        except ValueError as error:
            text = json.dumps({"error": f"the reply could not be encoded: {error}"})
        try:
            worker.app.execute("control_reply_insert", {
                "request_id": request_id, "worker": worker.worker_id,
                "node": worker.nodename, "reply": text,
                "replies_channel": worker.app.queries.replies_channel})
        except Exception as error:
            logger.warning("could not reply to control request %d: %s", request_id, error)

    # -- inspect ----------------------------------------------------------------------------
    def cmd_ping(self) -> Any:
        return {"ok": "pong"}

    def cmd_registered(self, taskinfoitems: list[str] | None = None) -> Any:
        items = taskinfoitems or []
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise CommandError(f"taskinfoitems must be a list of attribute names, got "
                               f"{limits.show(items)}")
        tasks = self.worker.app.tasks
        names = sorted(n for n in tasks if not n.startswith("pgqueue."))
        if not items:
            return names
        shown = []
        for name in names:
            attrs = {i: getattr(tasks[name], i, None) for i in items}
            fields = " ".join(f"{k}={v}" for k, v in attrs.items() if v is not None)
            shown.append(f"{name} [{fields}]" if fields else name)
        return shown

    def cmd_stats(self) -> Any:
        worker = self.worker
        pool = worker.pool
        usage = resource.getrusage(resource.RUSAGE_SELF)
        scaler = worker.autoscaler
        return {
            "pid": os.getpid(), "uptime": int(time.monotonic() - self.started),
            "total": dict(self.total), "processed": worker.processed,
            "prefetch_count": worker.concurrency,
            "pool": {
                "implementation": type(pool).__module__ + ":" + type(pool).__name__,
                "name": worker.pool_name, "max-concurrency": pool.size,
                "processes": list(getattr(pool, "child_pids", lambda: [])()),
                "max-tasks-per-child": worker.max_tasks_per_child,
                "timeouts": [worker.soft_time_limit, worker.time_limit],
                "autoscaler": None if scaler is None else
                {"max": scaler.max, "min": scaler.min},
            },
            "broker": {"transport": "postgresql", "schema": worker.app.schema},
            "queues": list(worker.queues), "worker_id": worker.worker_id,
            "events": worker.events.wanted,
            "rusage": {"utime": usage.ru_utime, "stime": usage.ru_stime,
                       "maxrss": usage.ru_maxrss, "minflt": usage.ru_minflt,
                       "majflt": usage.ru_majflt, "nvcsw": usage.ru_nvcsw,
                       "nivcsw": usage.ru_nivcsw},
        }

    def cmd_reserved(self, safe: bool | None = None) -> Any:
        """The jobs claimed here and not started yet (pgqueue.inspection says when)."""
        from pgqueue.inspection import reserved_info

        if safe is not None and not isinstance(safe, bool):
            raise CommandError(f"safe must be true, false or null, got {limits.show(safe)}")
        worker = self.worker
        ids, _, started = worker.holdings.snapshot()
        waiting = [job_id for job_id, began in zip(ids, started, strict=True) if not began]
        if not waiting:
            return []
        rows = worker.app.execute("job_list_held", {"ids": waiting})
        return [reserved_info(row, worker.nodename, safe) for row in rows
                if row[2] == worker.worker_id]

    def cmd_active_queues(self) -> Any:
        return [{"name": q, "routing_key": q, "exchange": {"name": "", "type": "direct"},
                 "exclusive": False, "durable": True, "auto_delete": False, "no_ack": False}
                for q in self.worker.queues]

    def cmd_conf(self, with_defaults: bool = False) -> Any:
        conf = self.worker.app.conf
        shown = {}
        for key in sorted(conf):
            value = conf[key]
            if not with_defaults and key in DEFAULTS and value == DEFAULTS[key]:
                continue
            if key in _URLS and isinstance(value, str):
                value = redact_dsn(value)
            elif _HIDDEN.search(key) and value:
                value = "********"
            shown[key] = jsonable(value)
        return shown

    def cmd_report(self) -> Any:
        worker = self.worker
        lines = [f"pgqueue: {__version__}", f"python: {sys.version.split()[0]}",
                 f"platform: {platform.platform()}", f"pool: {worker.pool_name} "
                 f"({worker.pool.size} slots)", f"queues: {', '.join(worker.queues)}",
                 "settings:"]
        lines += [f"  {k}: {v!r}" for k, v in self.cmd_conf().items()]
        return {"ok": "\n".join(lines)}

    # -- control ----------------------------------------------------------------------------
    def cmd_shutdown(self) -> Any:
        logger.warning("Shutdown requested by remote control")
        self.worker.stop()
        return {"ok": "shutting down"}

    def cmd_pool_grow(self, n: int = 1) -> Any:
        n = _number("n", n)
        worker = self.worker
        if worker.autoscaler is not None:
            worker.autoscaler.force(worker.pool.size + n)
        else:
            self.resize(worker.pool.size + n)
        return {"ok": f"pool will grow (now {worker.pool.size} slots)"}

    def cmd_pool_shrink(self, n: int = 1) -> Any:
        n = _number("n", n)
        worker = self.worker
        size = worker.pool.size - n
        if size < 1:
            raise CommandError(f"pool_shrink {n}: the pool has {worker.pool.size} slots and "
                               "keeps at least 1")
        if worker.autoscaler is not None:
            worker.autoscaler.force(size)
        else:
            self.resize(size)
        return {"ok": f"pool will shrink (now {worker.pool.size} slots)"}

    def resize(self, size: int) -> None:
        """Change the pool's size and the worker's advertised concurrency."""
        worker = self.worker
        worker.pool.resize(size)
        worker.concurrency = size
        self._update_row()

    def cmd_autoscale(self, max: int, min: int) -> Any:  # noqa: A002 - Celery's names
        high, low = _number("max", max), _number("min", min)
        if low > high:
            raise CommandError(f"autoscale: min ({low}) must not be above max ({high})")
        scaler = self.worker.autoscaler
        if scaler is None:
            raise CommandError("autoscale is not enabled: start the worker with "
                               "--autoscale=MAX,MIN")
        scaler.update(high, low)
        return {"ok": f"autoscale now max={high} min={low}"}

    def cmd_pool_restart(self, modules: list[str] | None = None, reload: bool = False) -> Any:
        worker = self.worker
        if not worker.app.conf.worker_pool_restarts:
            raise CommandError("pool restarts are not enabled: set worker_pool_restarts = "
                               "True")
        restart = getattr(worker.pool, "restart", None)
        if restart is None:
            raise CommandError(f"pool_restart needs -P processes: the {worker.pool_name} pool "
                               "runs tasks in the worker's own process; restart the worker")
        names = modules or []
        if not isinstance(names, list) or not all(isinstance(m, str) for m in names):
            raise CommandError(f"modules must be a list of module names, got "
                               f"{limits.show(modules)}")
        for name in names:
            try:
                if name not in sys.modules:
                    importlib.import_module(name)
                elif reload is True:
                    importlib.reload(sys.modules[name])
            except Exception as error:
                raise CommandError(f"pool_restart: cannot import {name}: "
                                   f"{type(error).__name__}: {error}") from None
        restart()
        return {"ok": "reload started"}

    def cmd_time_limit(self, task_name: str, soft: float | None = None,
                       hard: float | None = None) -> Any:
        task = self.worker.app.tasks.get(task_name) if isinstance(task_name, str) else None
        if task is None:
            raise CommandError(f"time_limit: unknown task {limits.show(task_name)}")
        task.soft_time_limit = _seconds("soft", soft)
        task.time_limit = _seconds("hard", hard)
        logger.info("New time limits for tasks of type %s: soft=%s hard=%s", task_name,
                    soft, hard)
        return {"ok": "time limits set successfully"}

    def cmd_add_consumer(self, queue: str) -> Any:
        try:
            queue = limits.name("queue", queue)
        except ValueError as error:
            raise CommandError(str(error)) from None
        worker = self.worker
        if queue in worker.queues:
            return {"ok": f"already consuming from {queue!r}"}
        worker.set_queues([*worker.queues, queue])
        self._update_row()
        return {"ok": f"add consumer {queue}"}

    def cmd_cancel_consumer(self, queue: str) -> Any:
        worker = self.worker
        if not isinstance(queue, str) or queue not in worker.queues:
            raise CommandError(f"not consuming from {limits.show(queue)}")
        if len(worker.queues) == 1:
            raise CommandError(f"cannot cancel {queue!r}: it is this worker's only queue; "
                               "add another first")
        worker.set_queues([q for q in worker.queues if q != queue])
        self._update_row()
        return {"ok": f"no longer consuming from {queue!r}"}

    def cmd_enable_events(self) -> Any:
        events = self.worker.events
        if events.wanted:
            return {"ok": "task events already enabled"}
        events.enable()
        return {"ok": "task events enabled"}

    def cmd_disable_events(self) -> Any:
        events = self.worker.events
        if not events.wanted:
            return {"ok": "task events already disabled"}
        events.disable()
        return {"ok": "task events disabled"}

    def _update_row(self) -> None:
        worker = self.worker
        try:
            worker.app.execute("worker_update", {"id": worker.worker_id,
                                                 "queues": list(worker.queues),
                                                 "concurrency": worker.pool.size})
        except Exception as error:
            logger.warning("could not update this worker's row: %s", error)
