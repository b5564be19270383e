"""The tasks the canvas tests compose, registered on the test's app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from pgqueue import App


@dataclass(frozen=True)
class CanvasTasks:
    add: Any  # x + y
    mul: Any  # x * y
    tsum: Any  # the sum of a list (a chord's body)
    boom: Any  # raises ZeroDivisionError("boom"), whatever it is given


@pytest.fixture
def tasks(app: App) -> CanvasTasks:
    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="mul")
    def mul(x: int, y: int) -> int:
        return x * y

    @app.task(name="tsum")
    def tsum(values: list[int]) -> int:
        return sum(values)

    @app.task(name="boom")
    def boom(*args: Any) -> None:
        raise ZeroDivisionError("boom")

    return CanvasTasks(add, mul, tsum, boom)
