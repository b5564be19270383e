"""A snoozed job is claimed again under the same attempt number, possibly before the
finisher has written the snooze and forgotten that holding (seen once in CI: the job's
SUCCESS was dropped as "late" and it waited out its lease)."""

from __future__ import annotations

from pgqueue.worker.holdings import Holdings


def test_a_job_held_again_under_the_same_attempt_survives_the_written_outcome() -> None:
    holdings = Holdings()
    holdings.add("job", 1)
    assert holdings.settle("job", 1)  # the snooze outcome, queued for the finisher
    holdings.add("job", 1)  # claimed again once the snooze made it queued
    holdings.forget([("job", 1)], settled_only=True)  # the snooze is written
    assert "job" in holdings
    assert holdings.settle("job", 1), "the second run's outcome was dropped as late"


def test_written_outcomes_are_forgotten_and_released_claims_too() -> None:
    holdings = Holdings()
    holdings.add("done", 2)
    assert holdings.settle("done", 2)
    holdings.forget([("done", 2)], settled_only=True)
    assert "done" not in holdings
    holdings.add("released", 1)  # handed back unsettled at shutdown
    holdings.forget([("released", 1)])
    assert "released" not in holdings
