"""The fenced code blocks of README.md and docs/*.md, as the docs test runs them.

The rules are written out in docs/architecture.md ("Docs are tested"); in short: a block
is numbered by its place among the page's fences (``docs/flask.md:3`` is the third), the
line ``<!-- docs: no-run (reason) -->`` right before a fence keeps it from running, and
the fence's language says how it runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

PYTHON = {"python", "py"}
PYCON = {"pycon"}
SHELL = {"bash", "sh", "shell", "console"}
SQL = {"sql"}
CONFIG = {"toml", "ini", "cfg", "json", "yaml", "yml"}
CODE = PYTHON | PYCON | SHELL | SQL | CONFIG
# Not code: program output, diagrams, trees. They are displays, never collected.
DISPLAY = {"", "text", "txt", "plain", "diff", "output"}

FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)[^\n]*$")
NO_RUN = re.compile(r"^<!--\s*docs:\s*no-run\s*\((.+)\)\s*-->\s*$")
PROJECT = re.compile(r"^<!--\s*docs:\s*project\s+(\S+)\s*-->\s*$", re.M)
FILE_HEADER = re.compile(r"^#\s*([\w./-]+\.py)(\s*\(continued\))?\s*$")


@dataclass(frozen=True)
class Block:
    page: str           # "README.md", "docs/flask.md"
    number: int         # 1-based place among the page's fences
    language: str
    code: str
    line: int           # line of the opening fence
    no_run: str | None  # the reason given in the marker, if any

    @property
    def id(self) -> str:
        return f"{self.page}:{self.number}"

    @property
    def file_name(self) -> str | None:
        """`tasks.py` for a python block whose first line is `# tasks.py`."""
        if self.language not in PYTHON:
            return None
        first = self.code.split("\n", 1)[0]
        match = FILE_HEADER.match(first)
        return match.group(1) if match else None

    @property
    def continues_file(self) -> bool:
        match = FILE_HEADER.match(self.code.split("\n", 1)[0])
        return bool(match and match.group(2))


def pages() -> list[Path]:
    """README.md and every docs/*.md: a new page is checked without touching the test."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def page_blocks(path: Path) -> list[Block]:
    lines = path.read_text().split("\n")
    page = path.relative_to(ROOT).as_posix()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, language = opening.groups()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            line = lines[j]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            j += 1
        previous = lines[i - 1].strip() if i else ""
        marker = NO_RUN.match(previous)
        blocks.append(Block(page, len(blocks) + 1, language.lower(), "\n".join(body) + "\n",
                            i + 1, marker.group(1) if marker else None))
        i = j + 1
    return blocks


def page_project(page: str) -> Path | None:
    """The example project a page's blocks run in: `<!-- docs: project examples/x -->`."""
    match = PROJECT.search((ROOT / page).read_text())
    return ROOT / match.group(1) if match else None


def all_blocks() -> list[Block]:
    return [block for path in pages() for block in page_blocks(path)]


def code_blocks() -> list[Block]:
    """What the test collects: every block that is not a display (output, diagram)."""
    return [block for block in all_blocks() if block.language not in DISPLAY]
