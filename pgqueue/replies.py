"""Waiting for the workers' replies to a control request (``app.control``, ``inspect``).

The caller LISTENs on ``<schema>.replies`` before it writes the request, so no wake-up
can be missed; each NOTIFY there only wakes it (anyone may send one), and it reads the
reply rows of its own request. It stops when every live worker the request addresses
has answered, when ``limit`` answers came, or at the timeout, whichever is first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pgqueue import db
from pgqueue.db import queries

if TYPE_CHECKING:
    from pgqueue.app import App


def live_workers(app: App, names: Sequence[str] | None) -> list[tuple[str, str, Any]]:
    """(worker id, node name, row) of the live workers ``names`` address (None: all)."""
    from pgqueue.control import node_of

    rows = app.execute("worker_list", {"alive_within": float(app.conf.worker_lease_seconds)})
    found = []
    for row in rows:
        worker_id, alive = row[0], row[9]
        node = node_of(worker_id)
        if alive and (names is None or worker_id in names or node in names):
            found.append((worker_id, node, row))
    return found


def collect(app: App, send: Callable[[], int], names: Sequence[str] | None, timeout: float,
            limit: int | None, callback: Callable[[dict[str, Any]], Any] | None
            ) -> list[dict[str, Any]]:
    """Send a request with ``send()`` (returns its id) and gather ``[{node: reply}]``."""
    expected = {worker_id for worker_id, _, _ in live_workers(app, names)}
    got: dict[str, dict[str, Any]] = {}
    keys: set[str] = set()
    conn = db.connect(app.dsn, application_name=db.application_name(app.schema, "control"))
    try:
        conn.execute(queries.listen(app.queries.replies_channel))
        request_id = send()
        deadline = time.monotonic() + timeout
        while True:
            for worker_id, node, reply in app.execute("control_reply_read",
                                                      {"request_id": request_id}):
                if worker_id in got:
                    continue
                key = node if node not in keys else worker_id  # two workers named alike
                keys.add(key)
                got[worker_id] = {key: reply}
                if callback is not None:
                    callback(got[worker_id])
            if (limit is not None and len(got) >= limit) or expected <= set(got):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for _ in conn.notifies(timeout=remaining, stop_after=1):
                pass
    finally:
        conn.close()
    return list(got.values())[:limit] if limit is not None else list(got.values())
