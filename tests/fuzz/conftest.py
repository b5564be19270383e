"""The fuzz marker, and the case counts at the end of the session."""

from __future__ import annotations

from collections import Counter

import pytest

from .checks import STATS


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: hypothesis batches against real workers")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not STATS:
        return
    total: Counter[str] = sum(STATS.values(), Counter())
    for pool, counts in [*STATS.items(), ("total", total)]:
        terminalreporter.write_line(
            f"fuzz {pool}: " + ", ".join(f"{n:.0f} {what}" for what, n in sorted(counts.items())))
