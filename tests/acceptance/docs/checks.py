"""What the docs test verifies beyond "the block ran", for blocks whose point is a result:
the quick start prints 5, a framework page's endpoints answer through the framework's own
test client with a real worker behind them. Keyed by block id; each runs right after its
block, in the same session."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.acceptance.docs.blocks import Block
    from tests.acceptance.docs.runner import Session

DEADLINE = 60.0


def poll(read: Callable[[], Any], done: Callable[[Any], bool], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {DEADLINE}s waiting for {what}; last: {value!r}")
        time.sleep(0.05)


def quick_start_prints_5(session: Session, block: Block) -> None:
    last = session.outputs[block.id].strip().splitlines()[-1]
    assert last == "5", f"the quick start printed {last!r}, the README says 5"


AFTER: dict[str, Callable[[Session, Block], None]] = {
    "README.md:4": quick_start_prints_5,
}


def fresh(module: str) -> Any:
    importlib.invalidate_caches()
    return importlib.import_module(module)
