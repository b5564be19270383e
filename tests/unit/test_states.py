"""pgqueue.states offers Celery's sets and ordering, so code that sorts or filters states
by Celery's rules runs unchanged."""

from __future__ import annotations

import pytest

from pgqueue import states
from pgqueue.states import precedence, state


def test_sets_are_celerys() -> None:
    assert set(states.READY_STATES) == {"SUCCESS", "FAILURE", "REVOKED"}
    assert set(states.UNREADY_STATES) == {"PENDING", "RECEIVED", "STARTED", "REJECTED", "RETRY"}
    assert set(states.EXCEPTION_STATES) == {"RETRY", "FAILURE", "REVOKED"}
    assert set(states.PROPAGATE_STATES) == {"FAILURE", "REVOKED"}
    assert set(states.ALL_STATES) == {"PENDING", "RECEIVED", "STARTED", "SUCCESS", "FAILURE",
                                 "RETRY", "REVOKED"}
    assert states.PROPAGATE_STATES <= states.EXCEPTION_STATES
    assert not states.READY_STATES & states.UNREADY_STATES


def test_precedence_ranks_and_custom_states() -> None:
    assert precedence(states.SUCCESS) == 0
    assert precedence(states.FAILURE) == 1
    assert precedence("PROGRESS") == precedence(None) == 2
    assert precedence(states.PENDING) == len(states.PRECEDENCE) - 1
    for hostile in ("", "success", "PENDING ", "x" * 10_000):
        assert precedence(hostile) == precedence(None)  # unknown, never an error


def test_state_orders_by_precedence() -> None:
    assert state(states.PENDING) < state(states.SUCCESS)
    assert state("PROGRESS") > state(states.STARTED)
    assert not state("PROGRESS") > state(states.SUCCESS)
    assert state(states.SUCCESS) >= state(states.SUCCESS)
    assert state(states.RETRY) <= state(states.RECEIVED)
    ordered = sorted(map(state, ["PENDING", "SUCCESS", "PROGRESS", "RETRY", "FAILURE"]))
    assert ordered == ["PENDING", "RETRY", "PROGRESS", "FAILURE", "SUCCESS"]


def test_state_is_still_a_string() -> None:
    value = state(states.SUCCESS)
    assert value == "SUCCESS" and isinstance(value, str)
    assert {value: 1}["SUCCESS"] == 1
    assert value in states.READY_STATES


@pytest.mark.parametrize("other", [None, 3, "garbage"])
def test_state_compares_with_anything_as_an_unknown_state(other: object) -> None:
    assert state(states.SUCCESS) > other
    assert state(states.PENDING) < other
