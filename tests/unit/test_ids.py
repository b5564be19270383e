"""Task ids: UUIDv7, time-ordered, and strictly increasing within a process."""

from __future__ import annotations

import os
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


def test_a_forked_child_draws_its_own_ids() -> None:
    """Parent and child must not count on from the same last id in one millisecond."""
    uuid7()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and exit at once
        os.write(write_end, uuid7().bytes)
        os._exit(0)
    parent_next = uuid7()
    os.close(write_end)
    child_next = uuid.UUID(bytes=os.read(read_end, 16))
    os.close(read_end)
    os.waitpid(pid, 0)
    assert child_next.version == 7
    # the 62 low random bits: equal only if the child counted on from the parent's state
    assert child_next.int & (2**62 - 1) != parent_next.int & (2**62 - 1)
