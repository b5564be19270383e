"""The window of UTC days a read by id of partitioned results tries first
(pgqueue.result.day_window, queries.WINDOWED): computed from the time in the ids only,
and given to the statement as timestamptz literals, never as text from a caller."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from pgqueue.db.queries import WINDOWED, Queries
from pgqueue.result import day_window

UTC = timezone.utc


def v7(moment: datetime) -> str:
    ms = int(moment.timestamp() * 1000) & 0xFFFF_FFFF_FFFF
    return str(uuid.UUID(int=ms << 80 | 0x7 << 76 | 0b10 << 62 | 0x1234))


@pytest.mark.parametrize(("made", "start"), [
    (datetime(2026, 12, 4, 12, 0, tzinfo=UTC), datetime(2026, 12, 4, tzinfo=UTC)),
    # the hour of margin (result_id_since) reaches the day before
    (datetime(2026, 12, 4, 0, 59, 59, 999000, tzinfo=UTC), datetime(2026, 12, 3, tzinfo=UTC)),
    (datetime(2026, 12, 4, 1, 0, tzinfo=UTC), datetime(2026, 12, 4, tzinfo=UTC)),
    (datetime(2026, 12, 4, 23, 59, tzinfo=UTC), datetime(2026, 12, 4, tzinfo=UTC)),
    # the epoch: the window starts before it
    (datetime(1970, 1, 1, tzinfo=UTC), datetime(1969, 12, 31, tzinfo=UTC)),
])
def test_one_id_reads_the_day_of_its_bound_and_the_next(made: datetime,
                                                        start: datetime) -> None:
    assert day_window([v7(made)]) == (start, start + timedelta(days=2))


def test_ids_of_the_same_day_share_one_statement() -> None:
    queries = Queries("s")
    a = day_window([v7(datetime(2026, 12, 4, 2, 0, tzinfo=UTC))])
    b = day_window([v7(datetime(2026, 12, 4, 22, 0, tzinfo=UTC))])
    assert a is not None and a == b
    assert queries.window("result_get", *a) is queries.window("result_get", *b)


def test_a_group_reads_from_its_earliest_day_to_the_day_after_its_latest() -> None:
    first = datetime(2026, 12, 4, 23, 30, tzinfo=UTC)
    ids = [v7(first), v7(first + timedelta(hours=2)), v7(first + timedelta(minutes=5))]
    assert day_window(ids) == (datetime(2026, 12, 4, tzinfo=UTC),
                               datetime(2026, 12, 7, tzinfo=UTC))
    # days further apart: the window would name as many days as the bounded read
    assert day_window([v7(first), v7(first + timedelta(days=2))]) is None
    assert day_window([]) is None


@pytest.mark.parametrize("row_id", [
    "ffffffff-ffff-7fff-bfff-ffffffffffff",  # year 10889: past what a datetime holds
    "fffffff0-0000-7000-8000-000000000000",
    "zzzzzzzz-zzzz-7zzz-8zzz-zzzzzzzzzzzz",  # not hex (row_id never gives it)
    "0194'; DROP TABLE results; --7xxxxxxx",  # 36 characters, a 7 at 14
])
def test_an_id_with_no_usable_time_has_no_window(row_id: str) -> None:
    assert day_window([row_id]) is None


def test_the_window_is_bound_as_literals_of_aware_times_only() -> None:
    queries = Queries('odd"schema')
    start = datetime(2026, 12, 4, tzinfo=UTC)
    text = queries.window("result_get_state", start, start + timedelta(days=2)).decode()
    assert "finished_at >= '2026-12-04 00:00:00+00:00'::timestamptz" in text
    assert "finished_at < '2026-12-06 00:00:00+00:00'::timestamptz" in text
    assert 'FROM "odd""schema".results WHERE id = %(id)s' in text
    with pytest.raises(ValueError, match="aware"):
        queries.window("result_get", datetime(2026, 12, 4), datetime(2026, 12, 6))
    with pytest.raises(KeyError):
        queries.window("job_claim", start, start)
    assert set(WINDOWED) == {"result_get", "result_get_state", "result_parent",
                             "result_forget", "result_get_many"}


def test_the_statements_kept_are_bounded() -> None:
    queries = Queries("s")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for day in range(600):
        begin = start + timedelta(days=day)
        queries.window("result_get", begin, begin + timedelta(days=2))
    assert len(queries._windows) <= 256
