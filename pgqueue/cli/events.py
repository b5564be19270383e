"""``pgqueue events``: Celery's events as they happen (a tail, ``--dump`` or ``--json``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import click

from pgqueue.cli.base import app_option, dsn_option, main, make_app, schema_option


def _time(event: dict[str, Any]) -> str:
    stamp = event.get("timestamp")
    if not isinstance(stamp, (int, float)):
        return "?"
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%H:%M:%S.%f")[:-3]


class _Repeated(ValueError):
    """A JSON object that gives one name twice."""


def _distinct(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise _Repeated
    return found


def json_lines() -> Callable[[str], str | None]:
    """What ``--json`` prints for a NOTIFY payload; None when it is not an event.

    The payload as its sender wrote it, with ``local_received`` added, when it is one
    line of ASCII JSON that decodes to an event and names no field twice (at any depth),
    as pgqueue's publishers write them: a line costs the decoding that checks it, not an
    encoding too. Any other event is encoded again from what ``pgqueue.events.parse``
    reads. Either way a JSON reader gets the event as ``app.events.Receiver`` hands it
    over: the same fields, values and order."""
    from pgqueue.events import json_encoder, parse

    checked = json.JSONDecoder(object_pairs_hook=_distinct).raw_decode
    compact = json_encoder()  # json.dumps(event, separators=(",", ":"), default=str)

    def line(payload: str) -> str | None:
        try:
            event, end = checked(payload)
        except ValueError:  # not JSON, a name given twice, or whitespace before the object
            pass
        else:
            if end == len(payload) and isinstance(event, dict) \
                    and isinstance(event.get("type"), str) and "local_received" not in event \
                    and payload.isascii() and "\n" not in payload and "\r" not in payload:
                return f'{payload[:-1]},"local_received":{time.time()!r}}}'
        received = parse(payload)
        return None if received is None else compact(received)

    return line


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
@click.option("-j", "--json", "as_json", is_flag=True,
              help="One JSON object per line (ASCII, no spaces between items): each event "
                   "as its sender wrote it, and local_received (when this command got it).")
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
    app = make_app(app_path, dsn, schema)
    tail = Tail()
    receiver = app.events.Receiver()
    try:
        if as_json:
            for line in receiver.itercapture_as(json_lines(), limit=limit, timeout=timeout):
                click.echo(line)
            return
        for event in receiver.itercapture(limit=limit, timeout=timeout):
            click.echo(dump(event) if as_dump else tail.line(event))
    except KeyboardInterrupt:
        pass
