"""The flags of ``pgqueue worker`` and ``pgqueue beat`` as the registry
(:data:`pgqueue.celery_compat.WORKER_FLAGS`, :data:`~pgqueue.celery_compat.BEAT_FLAGS`)
has them.

The commands declare the flags they honour themselves; :func:`celery_flags` adds the
refused and ignored ones, hidden from ``--help`` (the table in docs/migrating-from-celery.md
lists them). A refused flag stops the command with exit status 2 and one line naming the
alternative; an ignored one is logged once with its reason by :func:`warn_ignored`, after
logging is set up. tests/unit/test_option_registry_flags.py checks that every parameter of
both commands has its entry, and every entry its parameter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from pgqueue.celery_compat import IGNORED, REFUSED, Entry

F = TypeVar("F", bound=Callable[..., Any])
_IGNORED_KEY = "pgqueue.ignored_flags"


def spellings(name: str, entry: Entry) -> list[str]:
    """Every spelling of a flag, short ones first (``-E``, ``--task-events``, ``--events``)."""
    every = [name, *entry.aliases]
    return sorted(every, key=lambda s: (s.startswith("--"), every.index(s)))


def _refuse(name: str, entry: Entry) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value not in (None, False):
            click.echo(f"Error: {name} is not supported: {entry.how}", err=True)
            ctx.exit(2)
        return value
    return callback


def _note(entry: Entry) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value not in (None, False):
            ctx.meta.setdefault(_IGNORED_KEY, []).append(f"{param.opts[0]}: {entry.how}")
        return value
    return callback


def celery_flags(table: Mapping[str, Entry]) -> Callable[[F], F]:
    """Add the refused and ignored flags of ``table`` to a command, as hidden options."""
    def decorate(function: F) -> F:
        for name, entry in table.items():
            if entry.status not in (REFUSED, IGNORED):
                continue
            callback = _refuse(name, entry) if entry.status == REFUSED else _note(entry)
            kind: dict[str, Any] = {"metavar": "VALUE"} if entry.takes_value \
                else {"is_flag": True}
            function = click.option(*spellings(name, entry), hidden=True, expose_value=False,
                                    callback=callback, **kind)(function)
        return function
    return decorate


def warn_ignored(logger: logging.Logger) -> None:
    """Log each ignored flag given to the current command, once, with its reason."""
    for line in click.get_current_context().meta.get(_IGNORED_KEY, []):
        logger.warning("%s (ignored)", line)
