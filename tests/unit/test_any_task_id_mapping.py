"""The mapping of task ids to row ids: fixed for ever, since rows are found by it."""

from __future__ import annotations

import uuid

import pytest

from pgqueue import limits

CANONICAL = "0190f5c2-52a1-7d6e-8b1f-3c2d4e5f6a7b"


def test_the_namespace_and_a_string_ids_row_never_change() -> None:
    """Changing either would orphan every job and result sent under a string id."""
    assert str(limits.TASK_ID_NAMESPACE) == "779ba2fe-be86-55fd-934a-0d93e61080af"
    assert limits.row_id("order-42") == "83d821e3-4d31-588b-a8be-0c99af955733"
    assert limits.row_id("ünïcødé") == str(uuid.uuid5(limits.TASK_ID_NAMESPACE, "ünïcødé"))


@pytest.mark.parametrize("spelling", [CANONICAL, CANONICAL.upper(), CANONICAL.replace("-", ""),
                                      "{" + CANONICAL + "}", "{" + CANONICAL.upper() + "}"])
def test_every_spelling_of_a_uuid_is_that_uuid(spelling: str) -> None:
    assert limits.row_id(spelling) == CANONICAL
    assert limits.given_id(spelling) == (None if spelling == CANONICAL else spelling)


@pytest.mark.parametrize("near_miss", [
    CANONICAL[:-1], CANONICAL + "0", " " + CANONICAL, CANONICAL + "\n", "{" + CANONICAL,
    CANONICAL.replace("-", "", 1), "urn:uuid:" + CANONICAL, CANONICAL.replace("0", "g", 1),
    "+" + CANONICAL.replace("-", "")[1:], CANONICAL.replace("-", "_"),
])
def test_a_near_miss_of_a_uuid_is_a_name_of_its_own(near_miss: str) -> None:
    """Only exact UUID spellings are UUIDs: others (Python's uuid.UUID would read some of
    these) name a row of their own, so two different strings never share one."""
    assert limits.row_id(near_miss) == str(uuid.uuid5(limits.TASK_ID_NAMESPACE, near_miss))
    assert limits.given_id(near_miss) == near_miss


@pytest.mark.parametrize("bad", ["", "x" * 501, "a\x00b", "\udc80", 5, None, b"bytes"])
def test_an_id_no_job_can_have_has_no_row(bad: object) -> None:
    assert limits.row_id(bad) is None  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1 to 500 characters without NUL"):
        limits.job_id("task_id", bad)


def test_the_longest_id_is_accepted() -> None:
    assert limits.job_id("task_id", "x" * 500) == "x" * 500
    assert limits.row_id("x" * 500) is not None
