"""The pools' memory of terminates asked for jobs they have not begun
(pgqueue.worker.pools.base.TerminateFirst): taken once, and bounded whatever the ids."""

from __future__ import annotations

from pgqueue.worker.holdings import EARLY_MAX, EARLY_TTL
from pgqueue.worker.pools.base import TerminateFirst


def test_a_request_is_taken_once_by_its_job() -> None:
    asked = TerminateFirst()
    asked.add("a")
    assert not asked.take("b")
    assert asked.take("a")
    assert not asked.take("a")  # a later job of that id runs
    assert len(asked) == 0


def test_requests_for_jobs_that_ended_lapse() -> None:
    """Requests for jobs that ended before they came (never taken) do not pile up."""
    asked = TerminateFirst(ttl=0.0)
    for n in range(50_000):
        asked.add(f"ended-{n}")
        assert len(asked) <= 1  # the ones before have lapsed
    assert not asked.take("ended-0")


def test_at_most_so_many_are_kept_however_fast_they_come() -> None:
    asked = TerminateFirst(ttl=3600, most=100)
    for n in range(10_000):
        asked.add(f"job-{n}")
    assert len(asked) == 100
    assert asked.take("job-9999") and not asked.take("job-0")  # the oldest went first


def test_asking_again_renews_a_request() -> None:
    asked = TerminateFirst(ttl=3600, most=2)
    asked.add("a")
    asked.add("b")
    asked.add("a")  # now the newest
    asked.add("c")
    assert asked.take("a") and asked.take("c") and not asked.take("b")


def test_the_pools_keep_requests_as_long_as_the_worker_does() -> None:
    asked = TerminateFirst()
    assert (asked.ttl, asked.most) == (EARLY_TTL, EARLY_MAX)
