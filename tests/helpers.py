"""Helpers importable by tests: ``from tests.helpers import wait_until``."""

from .conftest import running_worker, wait_until

__all__ = ["running_worker", "wait_until"]
