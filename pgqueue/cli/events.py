"""``pgqueue events``: Celery's events as they happen (a tail, ``--dump`` or ``--json``)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import click

from pgqueue.cli.base import app_option, dsn_option, main, make_app, schema_option


def _time(event: dict[str, Any]) -> str:
    stamp = event.get("timestamp")
    if not isinstance(stamp, (int, float)):
        return "?"
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%H:%M:%S.%f")[:-3]


class Tail:
    """One line per event; task names remembered from task-received/-sent."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def line(self, event: dict[str, Any]) -> str:
        kind = str(event.get("type"))
        uuid = event.get("uuid")
        if isinstance(event.get("name"), str) and uuid:
            self.names[str(uuid)] = event["name"]
        what = f"{self.names.get(str(uuid), '?')}[{uuid}]" if uuid else ""
        detail = ""
        if kind == "task-succeeded":
            detail = f"{event.get('result')} in {float(event.get('runtime') or 0):.3f}s"
        elif kind in ("task-failed", "task-retried"):
            detail = str(event.get("exception"))
        elif kind in ("task-received", "task-sent"):
            detail = f"args={event.get('args')} kwargs={event.get('kwargs')}"
        elif kind == "task-revoked":
            detail = "terminated" if event.get("terminated") else \
                "expired" if event.get("expired") else ""
        elif kind.startswith("worker-"):
            detail = f"active={event.get('active')} processed={event.get('processed')}"
        if kind in ("task-succeeded", "task-failed", "task-revoked"):
            self.names.pop(str(uuid), None)
        return "  ".join(p for p in (_time(event), str(event.get("hostname")), kind, what,
                                     detail) if p)


def dump(event: dict[str, Any]) -> str:
    """Celery's ``celery events --dump`` shape: node [time] type: fields."""
    fields = ", ".join(f"{k}={event[k]!r}" for k in sorted(event)
                       if k not in ("type", "hostname", "timestamp", "local_received"))
    return f"{event.get('hostname')} [{_time(event)}] {event.get('type')}: {fields}"


@main.command()
@app_option
@dsn_option
@schema_option
@click.option("-d", "--dump", "as_dump", is_flag=True,
              help="Every field of every event, as `celery events --dump` prints them.")
@click.option("-j", "--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N",
              help="Stop after N events.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Stop after SECONDS.")
def events(app_path: str | None, dsn: str | None, schema: str | None, as_dump: bool,
           as_json: bool, limit: int | None, timeout: float | None) -> None:
    """Show the workers' events as they happen (workers started with -E, or after
    `pgqueue control enable_events`; task-sent with task_send_sent_event). Runs until
    Ctrl-C, --limit or --timeout."""
    if as_dump and as_json:
        raise click.UsageError("--dump and --json: choose one")
    from pgqueue.events import json_encoder

    app = make_app(app_path, dsn, schema)
    as_line = json_encoder(", ", ": ")  # json.dumps(event, default=str), built once
    tail = Tail()
    receiver = app.events.Receiver()
    try:
        for event in receiver.itercapture(limit=limit, timeout=timeout):
            if as_json:
                click.echo(as_line(event))
            else:
                click.echo(dump(event) if as_dump else tail.line(event))
    except KeyboardInterrupt:
        pass
