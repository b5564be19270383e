"""Tasks of the fuzz test: `pgqueue worker -A fuzz_tasks` (with tests/fuzz on the path).

What a job does is chosen by its first argument, a *plan*: a small JSON dict made by
``strategies.PLAIN_PLANS`` or ``strategies.odd_plans`` (``{"do": "raise", "kind":
"str_raises"}``...). Odd values travel inside a plan as ``ascii()`` text, so that a NUL
or a lone surrogate reaches the task even though jsonb cannot hold one. Every execution
leaves a row in ``executions`` (created by the test): a second run of the same attempt
bumps ``runs``, and ``ended`` says the body got to its end.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Any

import psycopg
from psycopg import sql

from pgqueue import App, Task

_local = threading.local()


def _conn(app: App) -> psycopg.Connection[Any]:
    """A connection of this thread in this process (a forked child drops its parent's).

    One that a time limit or terminate interrupted mid-statement (the solo pool runs every
    task on one thread) is still busy: it is dropped for a new one."""
    conn = getattr(_local, "conn", None)
    if conn is not None and not conn.closed and _local.pid == os.getpid() \
            and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.close()
    if conn is None or conn.closed or _local.pid != os.getpid():
        conn = psycopg.connect(app.dsn, autocommit=True)
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(app.schema)))
        _local.conn, _local.pid = conn, os.getpid()
    return conn


def decode(literal: str) -> Any:
    """The value a plan carries as ``ascii(value)`` text (made by our own strategies)."""
    return eval(literal, {"__builtins__": {}, "nan": math.nan, "inf": math.inf,
                          "datetime": datetime})


def nested(depth: int, as_dict: bool = False) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value} if as_dict else [value]
    return value


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this exception raises")


class _Unrepresentable(_Unprintable):
    def __repr__(self) -> str:
        raise RuntimeError("repr() of this exception raises")


class _Base(BaseException):
    pass


def _unpicklable() -> Exception:
    exc = ValueError("holds a lock")
    exc.lock = threading.Lock()  # type: ignore[attr-defined]
    exc.args = (lambda: None, threading.Lock())
    return exc


def _cycle() -> Exception:
    a, b = ValueError("a"), ValueError("b")
    a.__context__, b.__context__ = b, a
    return a


def _recurse(n: int) -> int:
    return _recurse(n + 1) + 1


def make_value(recipe: dict[str, Any]) -> Any:
    """A return value: a literal, something deep or big, or something JSON cannot hold."""
    if "lit" in recipe:
        return decode(recipe["lit"])
    if "deep" in recipe:
        return nested(recipe["deep"], recipe.get("as") == "dict")
    if "big" in recipe:
        return "x" * recipe["big"]
    made: dict[str, Any] = {
        "object": object, "set": lambda: {1, 2}, "bytes": lambda: b"\xff",
        "tuple_key": lambda: {(1, 2): 3}, "cycle": lambda: (lambda x: x.append(x) or x)([]),
        "generator": lambda: (i for i in range(3)),
    }
    return made[recipe["make"]]()


def make_exception(kind: str, message: str) -> BaseException:
    makers: dict[str, Any] = {
        "plain": lambda: ValueError(message),
        "str_raises": lambda: _Unprintable(message),
        "repr_raises": lambda: _Unrepresentable(message),
        "unpicklable": _unpicklable,
        "non_json_args": lambda: RuntimeError(object(), {1, 2}, b"\x00", math.nan),
        "deep_args": lambda: ValueError(nested(5000)),
        "cycle": _cycle,
        "base": lambda: _Base(message),
        "system_exit": lambda: SystemExit(message),
        "system_exit_code": lambda: SystemExit(3),
        "keyboard_interrupt": KeyboardInterrupt,
        "generator_exit": GeneratorExit,
    }
    return makers[kind]()  # type: ignore[no-any-return]


def perform(task: Task, plan: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    request = task.request
    conn = _conn(task.app)
    conn.execute("INSERT INTO executions (job_id, attempt, pid) VALUES (%s, %s, %s) "
                 "ON CONFLICT (job_id, attempt) DO UPDATE SET runs = executions.runs + 1",
                 (request.id, request.attempt, os.getpid()))
    if not isinstance(plan, dict):
        plan = {}
    do = plan.get("do")
    result: Any = None
    if do == "echo":
        result = {"args": list(args), "kwargs": kwargs}
    elif do == "return":
        result = make_value(plan["value"])
    elif do == "raise":
        if plan["kind"] == "recursion":
            _recurse(0)
        if plan["kind"] == "sys_exit":
            sys.exit()
        raise make_exception(plan["kind"], decode(plan.get("message", "''")))
    elif do == "retry" and request.attempt <= plan["times"]:
        when = decode(plan["when"])
        if isinstance(when, datetime.datetime):
            raise task.retry(eta=when)
        raise task.retry(countdown=when)
    elif do == "progress":
        task.update_state(state=decode(plan["state"]), meta=decode(plan["meta"]))
    elif do == "exit" and request.attempt <= plan["times"]:
        if multiprocessing.parent_process() is None:
            return "not in a pool child: refusing to kill the worker"
        if plan["how"] == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(1)
    conn.execute("UPDATE executions SET ended = true WHERE job_id = %s AND attempt = %s",
                 (request.id, request.attempt))
    return result if do in ("echo", "return") else "done"


def register(app: App) -> None:
    """The fuzz tasks, on the worker's app and on the test's producer app alike."""

    @app.task(bind=True, name="fuzz.act")
    def act(self: Task, plan: Any = None, /, *args: Any, **kwargs: Any) -> Any:
        return perform(self, plan, args, kwargs)

    @app.task(bind=True, name="fuzz.act_async")
    async def act_async(self: Task, plan: Any = None, /, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)
        return perform(self, plan, args, kwargs)

    @app.task(bind=True, name="fuzz.canary")
    def canary(self: Task, tag: str, needed: int, timeout: float) -> int:
        """Waits until ``needed`` canaries of ``tag`` run at once: proof of free slots."""
        conn = _conn(self.app)
        conn.execute("INSERT INTO canaries (tag, job_id) VALUES (%s, %s)", (tag, self.request.id))
        deadline = time.monotonic() + timeout
        while True:
            row = conn.execute("SELECT count(*) FROM canaries WHERE tag = %s", (tag,)).fetchone()
            seen = int(row[0]) if row else 0
            if seen >= needed or time.monotonic() > deadline:
                return seen
            time.sleep(0.02)


app = App("fuzz", set_as_current=False)
# A fast rescuer and stager keep batches short; production defaults are longer.
app.conf.update(leader_ttl_seconds=2, maintenance_interval=0.3, stage_interval=0.2)
register(app)
