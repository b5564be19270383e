"""The docs test's own rules (docs/architecture.md, "Docs are tested"), on made-up pages:
numbering, markers, and the parsing of shell and pycon blocks. No database."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.acceptance.docs import blocks as blocks_module
from tests.acceptance.docs.blocks import NO_RUN, PROJECT, Block, page_blocks, pages
from tests.acceptance.docs.runner import (
    Session,
    matches,
    pycon_examples,
    shell_commands,
    shell_steps,
    strip_comments,
)

pytestmark = pytest.mark.acceptance

PAGE = '''# A page

```python
x = 1
```

<!-- docs: no-run (needs a GPU) -->
```bash
train --epochs 3
```

1. In a list:

   ```sql
   SELECT 1;
   ```

```text
output, not code
```
'''


def write_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    monkeypatch.setattr(blocks_module, "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "page.md"
    page.write_text(text)
    return page


def test_blocks_are_numbered_by_fence_and_carry_their_marker(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = page_blocks(write_page(tmp_path, monkeypatch, PAGE))
    assert [(b.id, b.language, b.no_run) for b in found] == [
        ("docs/page.md:1", "python", None),
        ("docs/page.md:2", "bash", "needs a GPU"),
        ("docs/page.md:3", "sql", None),
        ("docs/page.md:4", "text", None),
    ]
    assert found[2].code == "SELECT 1;\n"       # the list's indentation is removed


def test_a_marker_counts_only_right_before_its_fence(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "<!-- docs: no-run (reason) -->\n\n```python\nx = 1\n```\n"
    (block,) = page_blocks(write_page(tmp_path, monkeypatch, text))
    assert block.no_run is None                  # a blank line between: the block runs


def test_every_docs_comment_in_the_pages_is_well_formed() -> None:
    """A misspelt marker (no reason, a typo) would silently run or skip nothing: refuse it.
    A no-run marker must stand right before a fence."""
    for path in pages():
        lines = path.read_text().split("\n")
        for number, line in enumerate(lines, 1):
            if not re.match(r"\s*<!--\s*docs\b", line):
                continue
            where = f"{path.name}:{number}"
            assert NO_RUN.match(line.strip()) or PROJECT.match(line.strip()), (
                f"{where}: write `<!-- docs: no-run (reason) -->` or "
                f"`<!-- docs: project DIR -->`, not {line.strip()!r}")
            if NO_RUN.match(line.strip()):
                assert number < len(lines) and lines[number].lstrip().startswith("```"), (
                    f"{where}: a no-run marker goes on the line right before the fence")
            project = PROJECT.match(line.strip())
            if project:
                assert (blocks_module.ROOT / project.group(1)).is_dir(), where


def test_no_run_markers_stay_few() -> None:
    """Skips stay visible and few: a new one needs a reason a reviewer accepts."""
    skipped = [b.id for b in blocks_module.code_blocks() if b.no_run]
    assert len(skipped) <= 15, skipped


def test_file_blocks_and_continuations() -> None:
    first = Block("p.md", 1, "python", "# yourapp.py\nx = 1\n", 1, None)
    more = Block("p.md", 2, "python", "# yourapp.py (continued)\ny = 2\n", 5, None)
    plain = Block("p.md", 3, "python", "# a comment about yourapp.py\n", 9, None)
    assert (first.file_name, first.continues_file) == ("yourapp.py", False)
    assert (more.file_name, more.continues_file) == ("yourapp.py", True)
    assert plain.file_name is None


def test_console_blocks_run_only_prompted_lines_with_their_continuations() -> None:
    code = ("$ pgqueue schedule add n t \\\n      --every 30\n"
            "schedule 'n' added: ...\n$ pgqueue schedule list\n")
    block = Block("p.md", 1, "console", code, 1, None)
    assert shell_commands(block) == ["pgqueue schedule add n t \\\n      --every 30",
                                     "pgqueue schedule list"]
    assert shell_steps(block)[0][1] == "schedule 'n' added: ..."
    sh = Block("p.md", 1, "sh", "# a remark\npgqueue migrate   # safe again\n\n", 1, None)
    assert shell_commands(sh) == ["pgqueue migrate   # safe again"]


def test_comments_are_cut_outside_quotes_only() -> None:
    assert strip_comments('echo "a # b" x#y  # remark') == 'echo "a # b" x#y'
    assert strip_comments("pgqueue worker -A tasks &     # on many machines") == (
        "pgqueue worker -A tasks &")


def test_pycon_output_may_elide_with_dots() -> None:
    code = ">>> crontab(minute=61)\nValueError: crontab minute=61: 61 is out of ...\n>>> 1 + 1\n2\n"
    assert pycon_examples(code) == [
        ("crontab(minute=61)", "ValueError: crontab minute=61: 61 is out of ..."),
        ("1 + 1", "2")]
    assert matches("ValueError: 61 is out of ...", "ValueError: 61 is out of range 0-59")
    assert not matches("ValueError: 61 is out of ...", "TypeError: 61 is out of range")
    assert not matches("2", "3")


def test_pycon_fails_when_the_output_differs(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGQUEUE_DSN", "postgresql://u@h/d")
    monkeypatch.setenv("PGQUEUE_SCHEMA", "s")
    import sys

    main = sys.modules["__main__"]
    try:
        session = Session(tmp_path)
        with pytest.raises(AssertionError, match="the page says '3'"):
            session.run(Block("p.md", 1, "pycon", ">>> 1 + 1\n3\n", 1, None))
        with pytest.raises(AssertionError, match="no rule runs"):
            session.run(Block("p.md", 2, "javascript", "1\n", 1, None))
    finally:
        sys.modules["__main__"] = main


def test_page_urls_become_the_test_database(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGQUEUE_DSN", "postgresql://postgres@127.0.0.1:5432/pgqueue_test")
    monkeypatch.setenv("PGQUEUE_SCHEMA", "s")
    import sys

    main = sys.modules["__main__"]
    try:
        session = Session(tmp_path)
    finally:
        sys.modules["__main__"] = main
    code = ('App("x", dsn="postgresql://user@db/app")\n'
            'create_engine("postgresql+psycopg://user@db/app")\n'
            "export PGQUEUE_DSN=postgresql://postgres@127.0.0.1:5432/postgres\n")
    assert session.with_dsn(code) == (
        'App("x", dsn="postgresql://postgres@127.0.0.1:5432/pgqueue_test")\n'
        'create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/pgqueue_test")\n'
        "export PGQUEUE_DSN=postgresql://postgres@127.0.0.1:5432/pgqueue_test\n")


def test_every_check_names_the_block_it_was_written_for() -> None:
    """A page edit that renumbers blocks must not leave a check on the wrong block."""
    from tests.acceptance.docs.checks import AFTER

    by_id = {b.id: b for b in blocks_module.code_blocks()}
    for block_id, (needle, _) in AFTER.items():
        assert block_id in by_id, f"checks.AFTER names {block_id}, which is no code block"
        assert needle in by_id[block_id].code, f"{block_id} no longer holds {needle!r}"
        assert not by_id[block_id].no_run, f"{block_id} is checked but marked no-run"


def test_pages_on_the_quick_start_get_its_tasks_and_worker() -> None:
    from tests.acceptance.docs.runner import needs_quick_start

    uses = Block("docs/canvas.md", 1, "python", "from tasks import add\n", 1, None)
    own = Block("docs/p.md", 1, "python", "# tasks.py\nfrom pgqueue import App\n", 1, None)
    skipped = Block("docs/p.md", 1, "python", "from tasks import add\n", 1, "reason")
    shell = Block("docs/p.md", 2, "sh", "pgqueue worker -A tasks\n", 1, None)
    assert needs_quick_start([uses])
    assert needs_quick_start([shell])
    assert not needs_quick_start([own, uses])          # the page writes its own
    assert not needs_quick_start([skipped])            # only no-run blocks name it
    readme = Block("README.md", 5, "python", "from tasks import add\n", 1, None)
    assert not needs_quick_start([readme])             # the quick start is the README's
    assert any(b.file_name == "tasks.py" for b in page_blocks(blocks_module.ROOT / "README.md"))


@pytest.mark.parametrize(("command", "long_running"), [
    ("pgqueue worker -A tasks", True),
    ("pgqueue -A proj worker -l info -P prefork", True),
    ("python manage.py pgqueue worker -c 8 -Q default,mail", True),
    ("pgqueue beat -A tasks", True),
    ("pgqueue worker --help", False),
    ("pgqueue inspect workers", False),
    ("pgqueue schedule add beat-report tasks.add --every 30", False),
    ("flask --app yourapp run", True),
    ("uvicorn api:app", True),
    ("pgqueue migrate", False),
])
def test_commands_that_never_end_by_themselves_are_recognised(
        command: str, long_running: bool) -> None:
    from tests.acceptance.docs.runner import LONG_RUNNING

    assert any(p.search(command) for p, _ in LONG_RUNNING) is long_running
