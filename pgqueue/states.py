"""Task states, with Celery's names, sets and ordering (``celery.states``)."""

from __future__ import annotations

from typing import Any

PENDING = "PENDING"
RECEIVED = "RECEIVED"
STARTED = "STARTED"
RETRY = "RETRY"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"
#: Celery's names for states its events report; pgqueue never stores them.
REJECTED = "REJECTED"
IGNORED = "IGNORED"

#: States after which a job never changes again.
READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, REJECTED, RETRY})
EXCEPTION_STATES = frozenset({RETRY, FAILURE, REVOKED})
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})
#: As in Celery, the states a result can report (REJECTED and IGNORED are not among them).
ALL_STATES = frozenset({PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED})

#: Highest precedence first; ``None`` stands for any custom state ('PROGRESS').
PRECEDENCE: list[str | None] = [
    SUCCESS, FAILURE, None, REVOKED, STARTED, RECEIVED, REJECTED, RETRY, PENDING]
_RANKS = {name: rank for rank, name in enumerate(PRECEDENCE)}


def precedence(state: str | None) -> int:
    """The rank of ``state`` in :data:`PRECEDENCE`: a lower number is a higher precedence."""
    return _RANKS.get(state, _RANKS[None])


class state(str):  # noqa: N801 - Celery's name
    """A state name that compares by precedence: ``state(PENDING) < state(SUCCESS)``, and a
    custom state ranks below SUCCESS and FAILURE but above every other built-in one."""

    def __gt__(self, other: Any) -> bool:
        return precedence(self) < precedence(other)

    def __ge__(self, other: Any) -> bool:
        return precedence(self) <= precedence(other)

    def __lt__(self, other: Any) -> bool:
        return precedence(self) > precedence(other)

    def __le__(self, other: Any) -> bool:
        return precedence(self) >= precedence(other)
