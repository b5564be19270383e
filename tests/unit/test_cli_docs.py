"""docs/cli.md is the --help text of every command; it must not drift from the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cli_reference_is_up_to_date() -> None:
    # A fresh interpreter: click caches each command's help option on first use, so a test
    # that invoked a subcommand on its own before would change the rendered help here.
    rendered = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_docs.py")],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert rendered.returncode == 0, rendered.stderr
    current = (ROOT / "docs" / "cli.md").read_text()
    assert current == rendered.stdout, (
        "docs/cli.md is out of date: run `python scripts/cli_docs.py > docs/cli.md`")
