"""Every code block of README.md and docs/*.md runs as written (docs/architecture.md,
"Docs are tested"): one test per block, ids like ``docs/flask.md:3``, each in a project
directory and a database schema of its own, with the page's earlier blocks run first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.acceptance.docs.blocks import CODE, ROOT, Block, code_blocks
from tests.pgserver import fresh_schema

pytestmark = pytest.mark.acceptance

BLOCKS = code_blocks()
TIMEOUT = 300


def test_blocks_are_found() -> None:
    """The collector sees the quick start; a change to the fence syntax cannot empty it."""
    ids = {block.id for block in BLOCKS}
    assert "README.md:3" in ids and any(i.startswith("docs/") for i in ids)


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_block_runs(block: Block, pg_dsn: str, tmp_path: Path) -> None:
    if block.no_run:
        pytest.skip(f"{block.id}: no-run: {block.no_run}")
    assert block.language in CODE, f"```{block.language}: no rule runs it"
    bindir = str(Path(sys.executable).parent)
    dsn = _url(pg_dsn)
    with fresh_schema(pg_dsn, "docs_") as schema:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("PGQUEUE_", "DATABASE_URL", "DJANGO_"))}
        env.update({
            "PGQUEUE_DSN": dsn, "DATABASE_URL": dsn, "PGQUEUE_SCHEMA": schema,
            "PGQUEUE_TEST": "1",
            "PGOPTIONS": f"-c search_path={schema},public",
            "PATH": bindir + os.pathsep + env.get("PATH", ""),
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
            "FLASK_RUN_PORT": str(_free_port()), "UVICORN_PORT": str(_free_port()),
        })
        run = subprocess.run([sys.executable, "-m", "tests.acceptance.docs.runner", block.id],
                             cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=TIMEOUT)
    output = (run.stdout + run.stderr)[-6000:]
    assert run.returncode == 0, f"{block.id} (line {block.line}) did not run:\n{output}"


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
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
