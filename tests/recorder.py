"""What hooks and signal receivers saw, kept in a file so that prefork children (and
`pgqueue worker` subprocesses) can add to it: one JSON line per event, one write each."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class Recorder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.touch()

    def __call__(self, kind: str, **data: Any) -> None:
        line = json.dumps({"kind": kind, "pid": os.getpid(), **data}, default=repr) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def events(self, **match: Any) -> list[dict[str, Any]]:
        found = [json.loads(line) for line in self.path.read_text().splitlines() if line]
        return [e for e in found if all(e.get(k) == v for k, v in match.items())]

    def kinds(self, **match: Any) -> list[str]:
        return [e["kind"] for e in self.events(**match)]
