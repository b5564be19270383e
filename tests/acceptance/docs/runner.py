"""Run a docs page the way a reader would: its blocks from the top down.

``python -m tests.acceptance.docs.runner PAGE [N]`` runs, in the current directory (a
fresh project directory) and with the environment the test gives (the test database, a
schema of the page's own), the runnable blocks of PAGE in order (up to block N). The page
is one session: files written by earlier blocks stay, names defined by earlier python
blocks stay, and commands an earlier block started in the background keep running until
the end. The rules are in docs/architecture.md ("Docs are tested").
"""

from __future__ import annotations

import configparser
import contextlib
import importlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgqueue.db import migrations
from tests.acceptance.docs import checks
from tests.acceptance.docs.blocks import (
    CODE,
    CONFIG,
    PYCON,
    PYTHON,
    ROOT,
    SHELL,
    SQL,
    Block,
    page_blocks,
    page_project,
)

DSN_PATTERN = re.compile(r"\b(postgres(?:ql)?(?:\+\w+)?)://[^\s\"'`)\]]*")
PIP_INSTALL = re.compile(r"\bpip install [^&;|#\n]*")
# Commands that run until stopped: started in the background, waited for until ready.
# `pgqueue [options] worker|beat ...` (also after `manage.py`), not their --help.
PGQUEUE_COMMAND = r"\bpgqueue(?:\s+-\S+(?:\s+[^-\s]\S*)?)*\s+{}(?=\s|$)(?!.*--help)"
LONG_RUNNING = [
    (re.compile(PGQUEUE_COMMAND.format("worker"), re.S), re.compile(r" ready\b")),
    (re.compile(PGQUEUE_COMMAND.format("beat"), re.S), re.compile(r" ready\b")),
    (re.compile(r"\bflask\b.*\brun\b"), re.compile(r"Running on")),
    (re.compile(r"\buvicorn\b"), re.compile(r"Application startup complete")),
]
BACKGROUND = re.compile(r"(.*[^&])&\s*$", re.S)  # `command &`
QUICK_WORKER = "pgqueue worker -A tasks"
# A page uses the quick start's tasks module (and its worker) when it names `tasks` and
# does not write a tasks.py of its own.
USES_QUICK_START = re.compile(r"\bfrom tasks import\b|^\s*import tasks\b|-A tasks\b", re.M)
READY_TIMEOUT = 60.0
COMMAND_TIMEOUT = 120.0


class Session:
    def __init__(self, project: Path) -> None:
        self.project = project
        self.dsn = os.environ["PGQUEUE_DSN"]
        self.schema = os.environ["PGQUEUE_SCHEMA"]
        # Python blocks run in a module that is __main__, as typed into `python`: what
        # looks a class's module up by name (SQLAlchemy's annotations, pickle) finds it.
        main = types.ModuleType("__main__")
        sys.modules["__main__"] = main
        self.namespace: dict[str, Any] = main.__dict__
        self.background: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.outputs: dict[str, str] = {}   # block id -> what its commands printed
        self.django_ready = False
        self.quick_worker: subprocess.Popen[bytes] | None = None
        self.pending: list[tuple[subprocess.Popen[bytes], Path, str, re.Pattern[str] | None]] = []

    def use_project(self, source: Path) -> None:
        """Copy the example project the page runs in; a Django one sets its settings."""
        shutil.copytree(source, self.project, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("tests", "__pycache__", "*.md"))
        manage = self.project / "manage.py"
        if manage.exists():
            found = re.search(r"DJANGO_SETTINGS_MODULE\W+([\w.]+)", manage.read_text())
            if found:
                os.environ["DJANGO_SETTINGS_MODULE"] = found.group(1)

    # -- substitutions ---------------------------------------------------------------

    def with_dsn(self, code: str) -> str:
        """Placeholder URLs (postgresql://user@db/app, ...) name the test database."""
        rest = self.dsn.split("://", 1)[1]
        return DSN_PATTERN.sub(lambda m: f"{m.group(1)}://{rest}", code)

    # -- python ----------------------------------------------------------------------

    def run_python(self, block: Block) -> None:
        code = self.with_dsn(block.code)
        name = block.file_name
        if name:
            path = self.project / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if block.continues_file:
                with path.open("a") as f:
                    f.write("\n" + code)
            else:
                path.write_text(code)
            module = name[:-3].replace("/", ".")
            sys.modules.pop(module, None)
            importlib.invalidate_caches()
            # A file must at least compile; importing it is the blocks' business.
            compile(path.read_text(), str(path), "exec")
            if name == "tasks.py" and self.quick_worker:
                self.restart_quick_worker()   # as the reader would, to load the new tasks
            return
        self.setup_django()
        exec(compile(code, f"<{block.id}>", "exec"), self.namespace)

    # -- the quick start's setup -----------------------------------------------------

    def quick_start(self) -> None:
        """The README's tasks.py in the project and `pgqueue worker -A tasks` running, for
        pages that build on the quick start instead of writing their own tasks.py."""
        readme = next(b for b in page_blocks(ROOT / "README.md")
                      if b.file_name == "tasks.py" and not b.continues_file)
        print(f"=== the quick start: {readme.id} as tasks.py, `pgqueue worker -A tasks`",
              flush=True)
        (self.project / "tasks.py").write_text(self.with_dsn(readme.code))
        self.start_quick_worker()

    def start_quick_worker(self) -> None:
        self.start(QUICK_WORKER, LONG_RUNNING[0][1])
        self.quick_worker = self.background[-1][0]
        self.await_ready()

    def restart_quick_worker(self) -> None:
        assert self.quick_worker is not None
        os.killpg(self.quick_worker.pid, signal.SIGTERM)
        self.quick_worker.wait(30)
        self.start_quick_worker()

    def setup_django(self) -> None:
        """In a Django project, python blocks run as in `python manage.py shell`."""
        if os.environ.get("DJANGO_SETTINGS_MODULE") and not self.django_ready:
            import django

            django.setup()
            self.django_ready = True

    def run_pycon(self, block: Block) -> None:
        for source, expected in pycon_examples(block.code):
            try:
                value = eval(compile(source, f"<{block.id}>", "eval"), self.namespace)
            except SyntaxError:
                exec(compile(source, f"<{block.id}>", "exec"), self.namespace)
                value = None
            except Exception as e:
                got = f"{type(e).__name__}: {e}"
                if not matches(expected, got):
                    raise AssertionError(f"{source!r} raised {got!r}, the page says "
                                         f"{expected!r}") from e
                continue
            got = "" if value is None else repr(value)
            if not matches(expected, got):
                raise AssertionError(f"{source!r} gave {got!r}, the page says {expected!r}")

    # -- shell -----------------------------------------------------------------------

    def run_shell(self, block: Block) -> None:
        printed: list[str] = []
        for command, shown in shell_steps(block):
            command = PIP_INSTALL.sub("true ", self.with_dsn(strip_comments(command)))
            ready = next((r for pattern, r in LONG_RUNNING if pattern.search(command)), None)
            background = BACKGROUND.match(command)
            if background or ready:
                self.start(background.group(1) if background else command, ready)
                continue
            self.await_ready()
            print(f"$ {command}", flush=True)
            done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", command],
                                  cwd=self.project, capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT)
            print(done.stdout + done.stderr, flush=True)
            printed.append(done.stdout)
            if done.returncode:
                raise AssertionError(f"`{command}` exited {done.returncode}")
            if shown.strip() and not matches(shown, done.stdout + done.stderr):
                raise AssertionError(f"`{command}` printed {done.stdout + done.stderr!r}; the "
                                     f"page shows {shown!r} (`...` stands for any text)")
        self.await_ready()
        self.outputs[block.id] = "".join(printed)

    def start(self, command: str, ready: re.Pattern[str] | None) -> None:
        """Start a command in the background; `await_ready` waits for it (several start
        side by side, which matters for a block of workers)."""
        print(f"$ {command} &", flush=True)
        log = self.project / f".bg-{len(self.background)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=self.project,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.background.append((proc, log))
        self.pending.append((proc, log, command, ready))

    def await_ready(self) -> None:
        """Until each command started says it is ready (its banner; a command with no
        known banner: it printed something or exited 0). One that exits fails the block."""
        deadline = time.monotonic() + READY_TIMEOUT
        while self.pending:
            for item in list(self.pending):
                proc, log, command, ready = item
                text = log.read_text(errors="replace")
                if (ready or re.compile(r".")).search(text) or (
                        ready is None and proc.poll() == 0):
                    self.pending.remove(item)
                elif proc.poll() is not None:
                    raise AssertionError(f"`{command}` exited {proc.returncode}:\n{text}")
                elif time.monotonic() > deadline:
                    raise AssertionError(f"`{command}` not ready after {READY_TIMEOUT}s:\n"
                                         f"{text}")
            time.sleep(0.05)

    def stop_background(self) -> None:
        """SIGTERM to every command still running (all at once), SIGKILL after 30 s."""
        running = [proc for proc, _ in self.background if proc.poll() is None]
        for proc in running:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in running:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for _, log in self.background:
            print(f"--- output of background command {log.name}:\n"
                  f"{log.read_text(errors='replace')[-3000:]}", flush=True)

    # -- sql and configuration -------------------------------------------------------

    def run_sql(self, block: Block) -> None:
        """In one transaction, rolled back: a block may create roles or rows freely."""
        text = re.sub(r"\bpgqueue\.(?=\w)", f'"{self.schema}".', block.code)
        # The group roles are named after the schema (pgqueue_producer for "pgqueue").
        text = re.sub(r"\bpgqueue_(?=producer|worker|control|reader)", f"{self.schema}_", text)
        migrations.migrate(self.dsn, self.schema, roles=True)
        with psycopg.connect(self.dsn) as conn:
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(
                sql.Identifier(self.schema)))
            for statement in split_sql(text):
                conn.execute(statement)
            conn.rollback()

    def run_config(self, block: Block) -> None:
        parse: dict[str, Callable[[str], Any]] = {
            "toml": lambda s: toml_module().loads(s), "json": json.loads,
            "ini": lambda s: configparser.ConfigParser().read_string(s),
            "cfg": lambda s: configparser.ConfigParser().read_string(s),
        }
        if block.language in parse:
            parse[block.language](block.code)
        else:
            import yaml  # type: ignore[import-untyped]

            yaml.safe_load(block.code)

    def run(self, block: Block) -> None:
        language = block.language
        if language in PYTHON:
            self.run_python(block)
        elif language in PYCON:
            self.run_pycon(block)
        elif language in SHELL:
            self.run_shell(block)
        elif language in SQL:
            self.run_sql(block)
        elif language in CONFIG:
            self.run_config(block)
        else:
            raise AssertionError(f"{block.id}: no rule runs ```{language} blocks; mark it "
                                 "```text if it is output, or add a no-run marker")
        if block.id in checks.AFTER:
            needle, check = checks.AFTER[block.id]
            assert needle in block.code, (
                f"checks.AFTER[{block.id!r}] expects a block containing {needle!r}: the page "
                "changed, move the key to the block's new number")
            check(self, block)
            print(f"checked: {check.__name__} ({(check.__doc__ or '').split(';')[0].strip()})",
                  flush=True)


def shell_commands(block: Block) -> list[str]:
    """One string per command; `$ ` prompts in ```console blocks mark the commands."""
    return [command for command, _ in shell_steps(block)]


def shell_steps(block: Block) -> list[tuple[str, str]]:
    """(command, the output the page shows for it): in ```console blocks, the lines
    after a `$ ` command up to the next one; elsewhere nothing is shown."""
    steps: list[tuple[str, str]] = []
    continuing = False
    for line in block.code.splitlines():
        if continuing:
            steps[-1] = (steps[-1][0] + "\n" + line, "")
        elif block.language == "console":
            if line.startswith("$ "):
                steps.append((line[2:], ""))
            elif steps:
                steps[-1] = (steps[-1][0], (steps[-1][1] + "\n" + line).strip("\n"))
        elif line.strip() and not line.lstrip().startswith("#"):
            steps.append((line, ""))
        continuing = bool(steps) and line.rstrip().endswith("\\") and (
            continuing or block.language != "console" or line.startswith("$ "))
    return steps


def needs_quick_start(blocks: list[Block]) -> bool:
    if not blocks or blocks[0].page == "README.md":
        return False
    writes_own = any(b.file_name == "tasks.py" and not b.continues_file for b in blocks)
    return not writes_own and any(
        USES_QUICK_START.search(b.code) for b in blocks if b.language in CODE and not b.no_run)


def toml_module() -> Any:
    """tomllib (Python 3.11), else the tomli it comes from."""
    for name in ("tomllib", "tomli"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise AssertionError("a ```toml block needs Python 3.11 or `pip install tomli` to parse")


def strip_comments(command: str) -> str:
    """The command without its `# ...` remarks (a `#` inside quotes or a word stays)."""
    lines = []
    for line in command.split("\n"):
        quote = ""
        for i, char in enumerate(line):
            if quote:
                quote = "" if char == quote else quote
            elif char in "\"'":
                quote = char
            elif char == "#" and (i == 0 or line[i - 1].isspace()):
                line = line[:i]
                break
        lines.append(line.rstrip())
    return "\n".join(lines).strip()


def pycon_examples(code: str) -> list[tuple[str, str]]:
    examples: list[tuple[str, str]] = []
    source: list[str] = []
    expected: list[str] = []
    for line in code.splitlines() + [">>> "]:
        if line.startswith(">>> "):
            if source:
                examples.append(("\n".join(source), "\n".join(expected).strip()))
            source, expected = [line[4:]], []
        elif line.startswith("... ") and not expected:
            source.append(line[4:])
        else:
            expected.append(line)
    return [(s, e) for s, e in examples if s.strip()]


def matches(expected: str, got: str) -> bool:
    """`...` in the page stands for any text."""
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, got.strip(), flags=re.S) is not None


def split_sql(text: str) -> list[str]:
    without_comments = re.sub(r"--[^\n]*", "", text)
    return [s.strip() for s in without_comments.split(";") if s.strip()]


def run_page(page: str, upto: int | None = None) -> dict[str, dict[str, str]]:
    """Run the page's blocks in order (up to block ``upto``), in the current directory;
    for each runnable block: {"status": "passed" | "failed" | "blocked", "output": ...}.
    After a failure, the later blocks are "blocked": they build on it."""
    blocks = page_blocks(ROOT / page)
    began = time.monotonic()
    results: dict[str, dict[str, str]] = {}
    failed: str | None = None
    session = Session(Path.cwd())
    project = page_project(page)
    if project:
        session.use_project(project)
    sys.path.insert(0, str(session.project))
    setup = io.StringIO()
    try:
        with contextlib.redirect_stdout(setup):
            try:
                if needs_quick_start(blocks):
                    session.quick_start()
            except BaseException:
                traceback.print_exc(file=sys.stdout)
                failed = "the quick start's setup"
        for block in blocks[:upto]:
            if block.language not in CODE or block.no_run:
                continue
            if failed:
                results[block.id] = {"status": "blocked", "output": (
                    f"not run: {failed}, which it builds on, failed:\n{setup.getvalue()}")}
                continue
            output = io.StringIO()
            with contextlib.redirect_stdout(output):
                print(f"=== {block.id} (line {block.line}, ```{block.language}) "
                      f"at {time.monotonic() - began:.1f}s", flush=True)
                try:
                    session.run(block)
                    status = "passed"
                except BaseException:
                    traceback.print_exc(file=sys.stdout)
                    status, failed = "failed", block.id
            results[block.id] = {"status": status, "output": output.getvalue()}
            sys.stdout.write(output.getvalue())
            if failed:
                setup = output
    finally:
        stopped = io.StringIO()
        with contextlib.redirect_stdout(stopped):
            session.stop_background()
            print(f"=== stopped at {time.monotonic() - began:.1f}s", flush=True)
        sys.stdout.write(stopped.getvalue())
        for result in results.values():
            if result["status"] != "passed":
                result["output"] += stopped.getvalue()[-4000:]
    return results


def main(argv: list[str]) -> int:
    """`runner PAGE [UPTO] [--json PATH]`: run a page (for a person: PAGE 5 stops after
    block 5); the docs test reads the JSON."""
    args = [a for a in argv if a != "--json"]
    json_path = argv[argv.index("--json") + 1] if "--json" in argv else None
    if json_path:
        args.remove(json_path)
    results = run_page(args[0], int(args[1]) if len(args) > 1 else None)
    if json_path:
        Path(json_path).write_text(json.dumps(results))
    return 0 if all(r["status"] == "passed" for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
