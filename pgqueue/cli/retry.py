"""``pgqueue retry``: send finished jobs (FAILURE, REVOKED) again under their own ids."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import click

from pgqueue.cli.base import app_option, dsn_option, main, make_app, schema_option
from pgqueue.exceptions import ConfigurationError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str) -> datetime | timedelta:
    """``--since``: a duration before now (``90s``, ``15m``, ``2h``, ``3d``) or an ISO
    8601 date and time (without a zone: in the app's timezone)."""
    found = _DURATION.fullmatch(value.strip())
    if found:
        return timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigurationError(
            f"--since {value!r}: give a duration such as 30m, 2h or 3d, or a date and time "
            "such as 2026-01-31T08:00") from None


@main.command()
@click.argument("ids", nargs=-1, metavar="[ID]...")
@app_option
@dsn_option
@schema_option
@click.option("--task", metavar="NAME", help="Retry the failed jobs of this task.")
@click.option("--since", metavar="WHEN",
              help="Only jobs that finished since WHEN: 30m, 2h, 3d, or an ISO 8601 time.")
@click.option("--state", default=None, metavar="STATE",
              help="FAILURE (the default), REVOKED or any.")
@click.option("--limit", type=click.IntRange(min=1), help="Retry at most this many jobs.")
def retry(ids: tuple[str, ...], app_path: str | None, dsn: str | None, schema: str | None,
          task: str | None, since: str | None, state: str | None,
          limit: int | None) -> None:
    """Send failed (or revoked) jobs again, by ID or by --task/--since; each keeps its id,
    and the outcome it leaves stays in its history (table job_history). Prints the ids."""
    if ids and (task or since or limit):
        raise ConfigurationError("give job ids or --task/--since/--limit, not both")
    if not ids and not task and not since:
        raise ConfigurationError("give job ids, or --task and/or --since to choose the "
                                 "jobs to retry")
    app = make_app(app_path, dsn, schema)
    results = app.retry(list(ids) if ids else None, task=task, state=state,
                        since=parse_since(since) if since else None, limit=limit)
    for result in results:
        click.echo(result.id)
    click.echo(f"retried {len(results)} job{'s' if len(results) != 1 else ''}", err=True)
