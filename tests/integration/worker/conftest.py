"""What the worker tests that run real `pgqueue worker` processes on
tests/integration/worker/apps/correct_tasks.py or apps/pool_gaps.py share: the file
their tasks write marks to, an app that sends them by name, and starting a worker of
correct_tasks (pool_gaps_helpers.start starts one of pool_gaps)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pgqueue import App
from tests.acceptance.procs import WorkerProcess

APPS = Path(__file__).resolve().parent / "apps"


@pytest.fixture
def marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file correct_tasks.py and pool_gaps.py append their marks to
    (CORRECT_MARKS, POOL_GAPS_MARKS, which the workers started after this fixture
    inherit)."""
    path = tmp_path / "marks.txt"
    path.touch()
    monkeypatch.setenv("CORRECT_MARKS", str(path))
    monkeypatch.setenv("POOL_GAPS_MARKS", str(path))
    return path


@pytest.fixture
def correct_app(pg_dsn: str, schema: str, marks: Path) -> Iterator[App]:
    application = App("correct", dsn=pg_dsn, schema=schema, set_as_current=False)
    yield application
    application.close()


@pytest.fixture
def gaps_app(pg_dsn: str, schema: str, marks: Path) -> Iterator[App]:
    application = App("pool_gaps", dsn=pg_dsn, schema=schema, set_as_current=False)
    yield application
    application.close()


def start(procs: list[WorkerProcess], pg_dsn: str, schema: str, *args: str) -> WorkerProcess:
    """A `pgqueue worker` of correct_tasks with ``args``, ready to claim."""
    worker = WorkerProcess(pg_dsn, schema, "correct_tasks", *args, apps_dir=APPS)
    procs.append(worker)
    worker.wait_ready(60)
    return worker


def lines(path: Path, prefix: str) -> list[list[str]]:
    """The marks that begin with ``prefix``, each split into its words."""
    return [line.split() for line in path.read_text().splitlines()
            if line.startswith(prefix + " ")]
