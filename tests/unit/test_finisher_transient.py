"""A finish that lost a deadlock (two finishes advancing the same workflow steps) is run
again, not split and stored as a FAILURE."""

from __future__ import annotations

import psycopg

from pgqueue.worker.finisher import retry_later


def test_deadlock_and_serialization_failure_are_retried() -> None:
    assert retry_later(psycopg.errors.DeadlockDetected("deadlock detected"))
    assert retry_later(psycopg.errors.SerializationFailure("could not serialize"))
    assert not retry_later(psycopg.errors.NumericValueOutOfRange("out of range"))
