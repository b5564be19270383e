"""The ``pgqueue`` command: :mod:`.base` holds the group and the options every command
shares; each other module declares one command group on it (``@main.command()``), so
importing it here is what adds it."""

from pgqueue.cli import (  # noqa: F401
    beat,
    control,
    dashboard,
    embedded,
    events,
    inspect,
    jobs,
    metrics,
    migrate,
    queues,
    retry,
    worker,
)
from pgqueue.cli.base import main

__all__ = ["main"]
