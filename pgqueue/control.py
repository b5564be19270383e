"""``app.control``: act on jobs by id (revoke) and on queues (purge)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgqueue.app import App


class Control:
    def __init__(self, app: App) -> None:
        self.app = app

    def revoke(self, task_id: str | Sequence[str], terminate: bool = False,
               signal: str = "SIGTERM", **kwargs: Any) -> list[str]:
        """End jobs that have not started as REVOKED; they will never run.

        With ``terminate=True`` a running job is stopped too: its child process is killed
        (``-P processes``), its coroutine cancelled (``-P asyncio``), or, in a thread, it
        is recorded REVOKED at once and interrupted at its next bytecode. Without it, a
        running job runs to its end, as in Celery. Returns the ids revoked before start.
        """
        ids = [task_id] if isinstance(task_id, str) else list(task_id)
        channels = self.app.queries.channels()
        rows = self.app.execute("job_revoke",
                                {"ids": ids, "reason": "revoked by request", **channels})
        revoked = [str(r[0]) for r in rows]
        running = [i for i in ids if i not in revoked]
        if terminate and running:
            payload = json.dumps({"action": "terminate", "ids": running, "signal": signal})
            self.app.execute("control_send", {"payload": payload, **channels})
        return revoked

    def purge(self, queues: Sequence[str] | None = None) -> int:
        """Delete every job waiting in ``queues`` (all queues when None); returns the count."""
        rows = self.app.execute("job_purge", {"queues": list(queues) if queues else None})
        return int(rows[0][0])
