"""What ``pgqueue inspect``, ``control`` and ``status`` share: their options, and replies
printed as Celery prints them (``-> node: OK`` and the answer indented below) or as JSON.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from collections.abc import Callable
from pprint import pformat
from typing import Any

import click
from click.core import ParameterSource

from pgqueue.app import App
from pgqueue.cli.base import app_option, dsn_option, make_app, schema_option
from pgqueue.control import DEFAULT_TIMEOUT

#: Celery's exit status when no worker answered (EX_UNAVAILABLE).
NO_REPLIES = 69
_OPTIONS = ("app_path", "dsn", "schema", "destination", "timeout", "as_json")


class Commands(click.Group):
    """Subcommands named as Celery names them (``pool_grow``), found with dashes too."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) \
            or super().get_command(ctx, cmd_name.replace("-", "_"))


def remote_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """-A/--dsn/--schema, -d/--destination, -t/--timeout and -j/--json."""
    for option in reversed((
        app_option, dsn_option, schema_option,
        click.option("-d", "--destination", metavar="NODE,NODE",
                     help="Only these workers (node names such as w1@host, or worker "
                          "ids), comma-separated. Default: every live worker."),
        click.option("-t", "--timeout", type=click.FloatRange(min=0, min_open=True),
                     metavar="SECONDS",
                     help=f"How long to wait for replies. Default: {DEFAULT_TIMEOUT:g}."),
        click.option("-j", "--json", "as_json", is_flag=True,
                     help="Print the replies as JSON ({node: answer}), keys in snake_case."),
    )):
        command = option(command)
    return command


def options(ctx: click.Context, given: dict[str, Any]) -> dict[str, Any]:
    """The shared options of a subcommand, given after it or after its group
    (``pgqueue inspect -A proj active`` and ``pgqueue inspect active -A proj``)."""
    found = {}
    parent = ctx.parent
    for name in _OPTIONS:
        value = given.get(name)
        if parent is not None and name in parent.params \
                and ctx.get_parameter_source(name) is not ParameterSource.COMMANDLINE \
                and parent.params[name] not in (None, False):
            value = parent.params[name]
        found[name] = value
    return found


def app_of(opts: dict[str, Any]) -> App:
    return make_app(opts["app_path"], opts["dsn"], opts["schema"])


def destination_of(opts: dict[str, Any]) -> list[str] | None:
    value = opts.get("destination")
    if not value:
        return None
    return [d.strip() for d in value.split(",") if d.strip()]


def snake(value: Any) -> Any:
    """Celery's hyphenated keys (``max-concurrency``) in snake_case, recursively."""
    if isinstance(value, dict):
        return {re.sub(r"-", "_", k) if re.fullmatch(r"[a-z]+(-[a-z]+)+", str(k)) else k:
                snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [snake(v) for v in value]
    return value


def pretty(reply: Any) -> tuple[str, str]:
    """(status, body) of one answer, the way Celery's CLI shows it."""
    if isinstance(reply, list):
        return "OK", "\n".join(f"* {item}" for item in reply) or "- empty -"
    if isinstance(reply, dict):
        if "ok" in reply:
            return "OK", textwrap.indent(pretty(reply["ok"])[1], "    ")
        if "error" in reply:
            return "ERROR", textwrap.indent(pretty(reply["error"])[1], "    ")
        return "OK", json.dumps(reply, indent=4, sort_keys=True, default=str)
    if isinstance(reply, str):
        return "OK", reply
    return "OK", pformat(reply)


def show(replies: dict[str, Any] | None, as_json: bool, body: bool = True,
         online: bool = True) -> None:
    """Print ``{node: answer}``; none at all is Celery's error and exit status 69. Exit
    status 1 when some node answered with an error."""
    if not replies:
        click.echo("Error: No nodes replied within time constraint.", err=True)
        sys.exit(NO_REPLIES)
    if as_json:
        click.echo(json.dumps(snake(replies), indent=2, default=str))
    else:
        for node, reply in replies.items():
            status, text = pretty(reply)
            click.echo(f"-> {node}: {status}")
            if body and text:
                click.echo(textwrap.indent(text, "    "))
        if online:
            count = len(replies)
            click.echo(f"\n{count} {'node' if count == 1 else 'nodes'} online.")
    if any(isinstance(r, dict) and "error" in r and "ok" not in r for r in replies.values()):
        sys.exit(1)


def flat(replies: list[dict[str, Any]] | None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for reply in replies or []:
        found.update(reply)
    return found
