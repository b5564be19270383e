"""Every code block of README.md and docs/*.md runs as written (docs/architecture.md,
"Docs are tested"): one test per block, ids like ``docs/flask.md:3``.

A page is run once, top down, in a project directory and a database schema of its own
(its blocks build on each other); each block's test reports that block's part of the run.
Under pytest-xdist the first test of a page runs it and the others read its results (a
file lock in the run's shared temporary directory), so a page never runs twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.acceptance.docs.blocks import CODE, ROOT, Block, code_blocks
from tests.pgserver import fresh_schema

pytestmark = pytest.mark.acceptance

BLOCKS = code_blocks()
TIMEOUT = 600


def test_blocks_are_found() -> None:
    """The collector sees the quick start; a change to the fence syntax cannot empty it."""
    ids = {block.id for block in BLOCKS}
    assert "README.md:3" in ids and any(i.startswith("docs/") for i in ids)


@pytest.fixture(scope="session")
def page_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory shared by every xdist worker of this pytest run."""
    root = tmp_path_factory.getbasetemp()
    shared = (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / "docs-runs"
    shared.mkdir(exist_ok=True)
    yield shared


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_block_runs(block: Block, pg_dsn: str, page_runs: Path) -> None:
    if block.no_run:
        pytest.skip(f"{block.id}: no-run: {block.no_run}")
    assert block.language in CODE, f"```{block.language}: no rule runs it"
    result = page_result(page_runs, block.page, pg_dsn).get(
        block.id, {"status": "missing", "output": "the page's run did not reach it"})
    assert result["status"] == "passed", (
        f"{block.id} (line {block.line}) {result['status']}:\n{result['output'][-8000:]}")


def page_result(shared: Path, page: str, pg_dsn: str) -> dict[str, dict[str, str]]:
    """The page's run, made by whichever test of the page comes first."""
    slug = page.replace("/", "_")
    results = shared / f"{slug}.json"
    with (shared / f"{slug}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not results.exists():
            results.write_text(json.dumps(run_page(page, pg_dsn)))
    loaded: dict[str, dict[str, str]] = json.loads(results.read_text())
    return loaded


def run_page(page: str, pg_dsn: str) -> dict[str, dict[str, str]]:
    bindir = str(Path(sys.executable).parent)
    dsn = _url(pg_dsn)
    project = Path(tempfile.mkdtemp(prefix="docs-page-"))
    out = project.parent / f"{project.name}.json"
    with fresh_schema(pg_dsn, "docs_") as schema:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("PGQUEUE_", "DATABASE_URL", "DJANGO_"))}
        env.update({
            "PGQUEUE_DSN": dsn, "DATABASE_URL": dsn, "PGQUEUE_SCHEMA": schema,
            "PGQUEUE_TEST": "1",
            "PGOPTIONS": f"-c search_path={schema},public",
            "PATH": bindir + os.pathsep + env.get("PATH", ""),
            "PYTHONPATH": os.pathsep.join([str(project), str(ROOT)]),
            "FLASK_RUN_PORT": str(_free_port()), "UVICORN_PORT": str(_free_port()),
        })
        run = subprocess.run(
            [sys.executable, "-m", "tests.acceptance.docs.runner", page, "--json", str(out)],
            cwd=project, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    shutil.rmtree(project, ignore_errors=True)
    if not out.exists():  # the runner itself broke: every block of the page says so
        return {b.id: {"status": "failed", "output": run.stdout + run.stderr}
                for b in BLOCKS if b.page == page}
    loaded: dict[str, dict[str, str]] = json.loads(out.read_text())
    out.unlink()
    return loaded


def _url(dsn: str) -> str:
    """The test database as a URL: the runner puts it in place of the pages' URLs."""
    parts = conninfo_to_dict(dsn)
    user = quote(str(parts.get("user", "postgres")), safe="")
    password = parts.get("password")
    auth = f"{user}:{quote(str(password), safe='')}" if password else user
    host = parts.get("host", "127.0.0.1")
    port = parts.get("port", "5432")
    return f"postgresql://{auth}@{host}:{port}/{parts.get('dbname', 'postgres')}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
