"""Flow control at run time: pause and resume queues, limit them, rate-limit tasks.

Every change is a row of ``<schema>.flow_limits`` (written by roles granted
``<schema>_control``), followed by a NOTIFY on the control channel; every worker reads
the limits again at that wake-up, and at most a second later without it. The workers
enforce them in the claim itself (``pgqueue/worker/gates.py``); see
docs/flow-control.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pgqueue import limits
from pgqueue.exceptions import ConfigurationError

if TYPE_CHECKING:
    from pgqueue.app import App

_UNITS = {1.0: "s", 60.0: "m", 3600.0: "h"}


def rate_text(count: float | None, seconds: float | None) -> str | None:
    """``(20, 1)`` -> ``"20/s"``, as Celery writes rates; None for no rate."""
    if not count or not seconds:
        return None
    return f"{count:g}/{_UNITS.get(float(seconds), f'{seconds:g}s')}"


@dataclass(frozen=True)
class QueueState:
    """One line of ``pgqueue queue list``."""

    name: str
    paused: bool
    queued: int
    running: int
    waiting: int  # scheduled for later (eta, countdown, retry delay)
    concurrency: int | None
    rate_limit: str | None
    source: str | None  # who set the limits: the code, or control at run time
    workers: int  # live workers consuming it

    @property
    def state(self) -> str:
        return "paused" if self.paused else "active"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state}


class UnknownQueue(ConfigurationError):
    """Pause, resume or limit of a queue that nothing names."""


def queues(app: App) -> list[QueueState]:
    """Every queue with jobs, limits or workers: its state, depth, running jobs, limits."""
    return [QueueState(name, bool(paused), int(queued), int(running), int(waiting),
                       concurrency, rate_text(count, seconds), source, int(workers))
            for name, paused, queued, running, waiting, concurrency, count, seconds, source,
            workers in app.execute("flow_queue_list")]


def _set(app: App, scope: str, name: str, *, paused: bool | None = None,
         concurrency: int | None | bool = False, rate: Any = False,
         create: bool = False) -> None:
    """Write one change; ``False`` leaves a field as it is."""
    name = limits.name(f"{scope} name", name)
    if scope == "queue" and not create and not app.execute(
            "flow_queue_known", {"name": name})[0][0]:
        raise UnknownQueue(f"unknown queue {name!r}: no job, worker or limit names it "
                           "(check the name; create=True / --create sets it before first use)")
    parsed = None if rate is False else limits.rate(f"{name}: rate_limit", rate)
    if concurrency is not False and concurrency is not None:
        concurrency = limits.concurrency(f"queue {name!r}: concurrency", concurrency)
    app.execute("flow_limit_set", {
        "scope": scope, "name": name, "paused": paused,
        "set_concurrency": concurrency is not False,
        "concurrency": None if concurrency is False else concurrency,
        "set_rate": rate is not False,
        "rate_count": parsed[0] if parsed else None,
        "rate_seconds": parsed[1] if parsed else None,
        **app.queries.channels()})


def pause(app: App, queue: str, create: bool = False) -> None:
    """Start no new job of ``queue`` on any worker (running ones finish)."""
    _set(app, "queue", queue, paused=True, create=create)


def resume(app: App, queue: str) -> None:
    _set(app, "queue", queue, paused=False)


def limit_queue(app: App, queue: str, concurrency: int | None | bool = False,
                rate: Any = False, create: bool = False) -> None:
    """At most ``concurrency`` jobs of ``queue`` running at once and at most ``rate``
    starts (``"10/s"``) fleet-wide; None removes a limit, and a limit not given stays."""
    _set(app, "queue", queue, concurrency=concurrency, rate=rate, create=create)


def rate_limit(app: App, task: str, rate: Any) -> None:
    """At most ``rate`` starts of ``task`` fleet-wide (None: no limit), whatever its code
    says, until changed again at run time."""
    _set(app, "task", task, rate=rate)
