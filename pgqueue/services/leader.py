"""The leader election: one lease row with a term, renewed by a conditional upsert."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from pgqueue.db.connection import Dedicated
from pgqueue.db.queries import Queries

if TYPE_CHECKING:
    pass

logger = logging.getLogger("pgqueue.maintenance")


class LeaderElection:
    """Takes or renews the leader lease; ``is_leader`` tells the other services."""

    name = "leader"
    leader_only = False

    def __init__(self, queries: Queries, holder: str, ttl: float) -> None:
        self.queries = queries
        self.holder = holder
        self.ttl = ttl
        self.term: int | None = None
        self._valid_until = 0.0

    @property
    def is_leader(self) -> bool:
        return self.term is not None and time.monotonic() < self._valid_until

    def run_once(self, db: Dedicated) -> float:
        asked = time.monotonic()
        rows = db.execute(self.queries["leader_acquire"], {"holder": self.holder,
                                                           "ttl": self.ttl})
        term = rows[0][0] if rows else None
        if term != self.term:
            if term is None:
                logger.info("%s is no longer the leader", self.holder)
            else:
                logger.info("%s is the leader (term %d)", self.holder, term)
        self.term = term
        # Trust the lease a little less long than the server grants it.
        self._valid_until = asked + self.ttl * 0.8
        return self.ttl / 3

    def release(self, db: Dedicated) -> None:
        if self.term is not None:
            db.execute(self.queries["leader_release"], {"holder": self.holder})
            self.term = None
