"""``app.control``: act on jobs by id (revoke) and on queues (purge)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import App


class Control:
    def __init__(self, app: App) -> None:
        self.app = app

    def revoke(self, task_id: str | Sequence[str], terminate: bool = False,
               signal: str = "SIGTERM", **kwargs: Any) -> list[str]:
        """End jobs that have not started as REVOKED; they will never run.

        Returns the ids that were revoked. A job already running is not stopped.
        """
        ids = [task_id] if isinstance(task_id, str) else list(task_id)
        app = self.app
        with app.connection() as conn:
            rows = conn.execute(app.queries["job_revoke"], {
                "ids": ids, "reason": "revoked by request", **app.queries.channels()
            }).fetchall()
        return [str(r[0]) for r in rows]

    def purge(self, queues: Sequence[str] | None = None) -> int:
        """Delete every job waiting in ``queues`` (all queues when None); returns the count."""
        app = self.app
        with app.connection() as conn:
            cur = conn.execute(app.queries["job_purge"],
                               {"queues": list(queues) if queues else None})
            return cur.rowcount
