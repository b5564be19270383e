"""``manage.py pgqueue worker|beat|migrate|inspect|...``: the ``pgqueue`` CLI on this project.

Every sub-command and option is the ``pgqueue`` command's (``manage.py pgqueue worker
--help``); ``-A`` is filled in with the project's App, configured from Django's settings.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

APP_PATH = "pgqueue.contrib.django:app"
_TAKES_APP = {"worker", "beat", "migrate", "purge", "inspect", "result", "call"}


def run_cli(args: list[str], prog_name: str = "manage.py pgqueue") -> int:
    """Run ``pgqueue ARGS`` with this project's App; returns the exit status."""
    from pgqueue import cli

    args = list(args)
    if not {"-A", "--app"} & set(args) and not {"-h", "--help"} & set(args[:1]):
        if args and args[0] in _TAKES_APP:
            args[1:1] = ["-A", APP_PATH]
        elif args[:1] == ["schedule"] and len(args) > 1:  # `schedule list`, ...
            args[2:2] = ["-A", APP_PATH]
    try:
        cli.main(args=args, prog_name=prog_name, standalone_mode=True)
    except SystemExit as done:
        return int(done.code or 0) if not isinstance(done.code, str) else 1
    return 0


class Command(BaseCommand):
    help = "Run pgqueue (worker, beat, migrate, inspect, purge, result, call) on this project."

    def run_from_argv(self, argv: list[str]) -> None:
        # The pgqueue CLI parses its own options; Django's parser would reject them.
        status = run_cli(argv[2:], prog_name=f"{argv[0]} {argv[1]}")
        if status:
            raise SystemExit(status)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("cli_args", nargs=argparse.REMAINDER,
                            help="A pgqueue sub-command and its options, e.g. worker -c 4.")

    def handle(self, *args: Any, **options: Any) -> None:
        status = run_cli(list(args) + list(options.get("cli_args") or []))
        if status:
            raise CommandError(f"pgqueue exited with status {status}")
