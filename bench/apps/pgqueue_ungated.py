"""The baseline of issue 16's A/B (``python -m bench.flow``), for the benchmark only:
pgqueue's app with the claim as it was before flow control (migration 0007).

Importing it, as ``pgqueue worker -A bench.apps.pgqueue_ungated:app`` does, takes out of
this process what flow control added to an unlimited queue's claim: the limits read at
start and every second (``Gates.sync``/``refresh``), the ``concurrency_key IS NULL`` test
in the claim statements, and the pass through ``Gates.claim``. The bench runs it on a
schema without the ``concurrency_key`` column and its two indexes
(``bench.flow.strip_flow_control``), so that the table's writes are as before 0007 too.
"""

from __future__ import annotations

from typing import Any

from pgqueue.db import queries
from pgqueue.worker import gates
from pgqueue.worker.claiming import ClaimCursors
from pgqueue.worker.execution import ClaimedJob

for _name in ("job_claim", "job_claim_one_queue"):
    queries.TEMPLATES[_name] = queries.TEMPLATES[_name].replace(queries._OPEN, "")


def _sync(self: gates.Gates, claimer: Any, app: Any) -> None:
    self.stale = False


def _claim(self: gates.Gates, claimer: Any, cursors: ClaimCursors, limit: int, worker: str,
           lease: float) -> list[ClaimedJob]:
    return cursors.claim(claimer, self.queries, limit, worker, lease)


def _wait_time(self: gates.Gates, longest: float) -> float:
    return longest


gates.Gates.sync = _sync  # type: ignore[method-assign]
gates.Gates.claim = _claim  # type: ignore[method-assign]
gates.Gates.wait_time = _wait_time  # type: ignore[method-assign]

from .pgqueue_app import app  # noqa: E402

__all__ = ["app"]
