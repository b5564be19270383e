"""Task ids: UUIDv7, time-ordered, and strictly increasing within a process."""

from __future__ import annotations

import threading
import time
import uuid

from pgqueue.utils import uuid as new_id
from pgqueue.utils import uuid7


def test_uuid7_layout() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert before <= value.int >> 80 <= after


def test_ids_strictly_increase_even_within_one_millisecond() -> None:
    ids = [uuid7() for _ in range(20000)]
    assert all(a < b for a, b in zip(ids, ids[1:], strict=False))
    assert len({i.int >> 80 for i in ids}) < len(ids)  # many shared a millisecond


def test_ids_from_many_threads_are_unique_and_valid() -> None:
    found: list[list[uuid.UUID]] = [[] for _ in range(4)]

    def make(bucket: list[uuid.UUID]) -> None:
        bucket.extend(uuid7() for _ in range(5000))

    threads = [threading.Thread(target=make, args=(bucket,)) for bucket in found]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for bucket in found for i in bucket]
    assert len(set(every)) == len(every)
    assert all(i.version == 7 for i in every)
    for bucket in found:
        assert bucket == sorted(bucket)


def test_task_id_is_a_string_uuid() -> None:
    text = new_id()
    assert isinstance(text, str) and uuid.UUID(text).version == 7
