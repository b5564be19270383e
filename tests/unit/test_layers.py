"""The folders are the architecture: imports point one way (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pgqueue"

# Lower numbers are lower layers; a module may import its own layer and those below.
LAYERS = {
    "pgqueue.db": 0,
    "pgqueue.worker": 2,
    "pgqueue.services": 2,
    "pgqueue.cli": 3,
    "pgqueue.__main__": 3,
    "pgqueue.contrib": 3,
}
# The top-level modules (the public API) and pgqueue.client (what sending needs behind
# them) form one layer, above the database and below the worker.
PUBLIC_API = 1
# Foundations every layer uses: they import nothing of pgqueue but each other.
FOUNDATION = {"pgqueue.exceptions", "pgqueue.states", "pgqueue.utils", "pgqueue.config",
              "pgqueue.celery_compat",
              "pgqueue.limits",
              "pgqueue.signals", "pgqueue.request", "pgqueue"}
# Entry points that start a higher layer on purpose, imported only when called.
ALLOWED = {
    ("pgqueue.app", "pgqueue.worker.worker"),       # app.Worker / app.worker_main()
    ("pgqueue.task", "pgqueue.worker.execution"),   # task.apply(): eager execution
}


def layer(module: str) -> float:
    if module in FOUNDATION:
        return -1
    for prefix, rank in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return PUBLIC_API


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_module(module: str, name: str) -> str:
    """``from pgqueue.db import embedded`` imports ``pgqueue.db.embedded``."""
    folder = PACKAGE.parent.joinpath(*module.split("."))
    if (folder / f"{name}.py").exists() or (folder / name).is_dir():
        return f"{module}.{name}"
    return module


def runtime_imports(tree: ast.AST) -> list[str]:
    """Every ``pgqueue`` module imported outside ``if TYPE_CHECKING:`` blocks."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "pgqueue" or node.module.startswith("pgqueue."):
                found.extend(imported_module(node.module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend(a.name for a in node.names if a.name.startswith("pgqueue."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_no_relative_imports_and_no_import_upwards() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        if source == "pgqueue":
            continue  # the public surface re-exports from every layer it needs
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                wrong.append(f"{source}: relative import (use pgqueue.… paths)")
        for target in runtime_imports(tree):
            if (source, target) in ALLOWED or source.startswith("pgqueue.contrib"):
                continue
            if layer(target) > max(layer(source), 0):
                wrong.append(f"{source} imports {target} (a higher layer)")
    assert wrong == [], "\n".join(wrong)


def test_foundations_import_only_foundations_and_db() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        source = module_name(path)
        if source not in FOUNDATION or source == "pgqueue":
            continue
        for target in runtime_imports(ast.parse(path.read_text())):
            assert target in FOUNDATION or layer(target) == 0, (source, target)
