"""Hostile tasks (issue 12): each one tries to stop the thread, loop or child running it.

Shared by the in-process tests and the `pgqueue worker` app ``fault_apps/hostile.py``.
Every task first leaves a row in ``executions``, so a test can prove nothing ran twice.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import psycopg
from psycopg import sql

from pgqueue import App

#: Task name -> (final state, a fragment of its error) in the pools that run it in a thread.
HOSTILE: dict[str, tuple[str, str]] = {
    "poison.sys_exit": ("FAILURE", "SystemExit() raised by the task: a task can't exit"),
    "poison.exit_3": ("FAILURE", "SystemExit(3) raised by the task: a task can't exit"),
    "poison.keyboard": ("FAILURE", "KeyboardInterrupt() raised by the task"),
    "poison.generator_exit": ("FAILURE", "GeneratorExit() raised by the task"),
    "poison.recursion": ("FAILURE", "RecursionError"),
    # An exception whose str() fails is stored under its type (the finisher's safe form).
    "poison.str_raises": ("FAILURE", "StrRaises: <str() of the exception failed>"),
    "poison.str_loops": ("FAILURE", "StrLoops: <str() of the exception failed>"),
    "poison.arg_repr_raises": ("FAILURE", "ValueError: <str() of the exception failed>"),
    "poison.result_repr_raises": ("SUCCESS", ""),
    "poison.not_reinstantiable": ("FAILURE", "Picky: 1-2"),
    "poison.async_exit": ("FAILURE", "SystemExit(4) raised by the task"),
    "poison.async_keyboard": ("FAILURE", "KeyboardInterrupt() raised by the task"),
    "poison.async_cancelled": ("FAILURE", "CancelledError() raised by the task"),
}


class StrRaises(Exception):
    def __str__(self) -> str:
        raise ValueError("no str for you")


class StrLoops(Exception):
    def __str__(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return repr(self)


class BadRepr:
    def __repr__(self) -> str:
        raise ValueError("no repr for you")


class ReprRaisesDict(dict[str, Any]):
    def __repr__(self) -> str:
        raise ValueError("no repr for you")


class Picky(Exception):
    """Its stored args can't build it again: ``Picky("1-2")`` raises TypeError."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}-{b}")


def register(app: App) -> None:
    """Define the hostile tasks, and ``poison.echo``/``poison.slow``/``poison.os_exit``."""
    insert = sql.SQL("INSERT INTO {}.executions (job_id, task, pid) VALUES (%s, %s, %s)"
                     ).format(sql.Identifier(app.schema))

    def executed(task: Any) -> None:
        with psycopg.connect(app.dsn, autocommit=True) as conn:
            conn.execute(insert, (task.request.id, task.name, os.getpid()))

    def define(name: str, **options: Any) -> Any:
        return app.task(name=name, bind=True, **options)

    @define("poison.sys_exit")
    def sys_exit(self: Any) -> None:
        executed(self)
        sys.exit()

    @define("poison.exit_3")
    def exit_3(self: Any) -> None:
        executed(self)
        raise SystemExit(3)

    @define("poison.keyboard")
    def keyboard(self: Any) -> None:
        executed(self)
        raise KeyboardInterrupt

    @define("poison.generator_exit")
    def generator_exit(self: Any) -> None:
        executed(self)
        raise GeneratorExit

    @define("poison.recursion")
    def recursion(self: Any) -> None:
        executed(self)

        def deeper(n: int) -> int:
            return deeper(n + 1) + 1

        deeper(0)

    @define("poison.str_raises")
    def str_raises(self: Any) -> None:
        executed(self)
        raise StrRaises("x")

    @define("poison.str_loops")
    def str_loops(self: Any) -> None:
        executed(self)
        raise StrLoops("x")

    @define("poison.arg_repr_raises")
    def arg_repr_raises(self: Any) -> None:
        executed(self)
        raise ValueError(BadRepr())

    @define("poison.result_repr_raises")
    def result_repr_raises(self: Any) -> dict[str, Any]:
        executed(self)
        return ReprRaisesDict(a=1)

    @define("poison.not_reinstantiable")
    def not_reinstantiable(self: Any) -> None:
        executed(self)
        raise Picky(1, 2)

    @define("poison.async_exit")
    async def async_exit(self: Any) -> None:
        executed(self)
        raise SystemExit(4)

    @define("poison.async_keyboard")
    async def async_keyboard(self: Any) -> None:
        executed(self)
        raise KeyboardInterrupt

    @define("poison.async_cancelled")
    async def async_cancelled(self: Any) -> None:
        executed(self)
        raise asyncio.CancelledError

    @define("poison.echo")
    def echo(self: Any, i: int) -> int:
        executed(self)
        return i

    @define("poison.slow")
    def slow(self: Any, seconds: float) -> float:
        executed(self)
        time.sleep(seconds)
        return seconds

    @define("poison.os_exit", max_retries=1)
    def os_exit(self: Any) -> None:
        executed(self)
        os._exit(1)


def create_executions(conn: psycopg.Connection[Any], schema: str) -> None:
    conn.execute(sql.SQL("CREATE TABLE {}.executions (job_id uuid NOT NULL, task text, "
                         "pid int, at timestamptz DEFAULT now())").format(sql.Identifier(schema)))


def executions(conn: psycopg.Connection[Any], schema: str) -> dict[str, int]:
    """How many times each job ran."""
    rows = conn.execute(sql.SQL("SELECT job_id::text, count(*) FROM {}.executions GROUP BY 1"
                                ).format(sql.Identifier(schema))).fetchall()
    return {job_id: n for job_id, n in rows}
