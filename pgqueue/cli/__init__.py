"""The ``pgqueue`` command: :mod:`.base` holds the group, the options every command
shares and the core commands; each other module adds one command group."""

from pgqueue.cli import beat, embedded
from pgqueue.cli.base import main

beat.register(main)
embedded.register(main)

__all__ = ["main"]
