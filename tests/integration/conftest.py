"""Fixtures of the integration tests that check what each database role may do."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from pgqueue import App
from tests.login_roles import login_roles, with_group_roles


@pytest.fixture
def groups(pg_dsn: str, schema: str) -> dict[str, str]:
    """The schema's group roles (producer, worker, control, reader) by kind."""
    return with_group_roles(pg_dsn, schema)


@pytest.fixture
def login(pg_dsn: str) -> Iterator[Callable[..., str]]:
    """Makes a login role in the given groups and returns its DSN."""
    with login_roles(pg_dsn) as make:
        yield make


@pytest.fixture
def apps(schema: str) -> Iterator[Callable[[str], App]]:
    """Makes apps on the test schema for other DSNs, closed afterwards."""
    made: list[App] = []

    def make(dsn: str) -> App:
        made.append(App("roles", dsn=dsn, schema=schema, set_as_current=False))
        return made[-1]

    yield make
    for app in made:
        app.close()
