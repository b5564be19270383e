"""What a long-running command needs from its process: Celery's node-name templates
(``-n w1@%h``, ``--pidfile=/run/pgqueue/%n.pid``) and a pidfile that guards one node."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from pgqueue.exceptions import ConfigurationError
from pgqueue.utils import hostname

_TEMPLATE = re.compile(r"%(.)")


def _expand(template: str, values: dict[str, str]) -> str:
    return _TEMPLATE.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def host_format(template: str) -> str:
    """``-n``: ``%h`` is this host's name, ``%n`` its first label, ``%d`` its domain."""
    host = hostname()
    name, _, domain = host.partition(".")
    return _expand(template, {"h": host, "n": name, "d": domain, "%": "%"})


def node_format(template: str, nodename: str) -> str:
    """``--pidfile``/``--logfile``: ``%p`` is the node name, ``%n`` its part before the
    ``@``, ``%h`` its host, ``%d`` that host's domain; ``%i``/``%I`` (Celery's child
    index) are ``0`` and empty, as for Celery's main process."""
    name, _, host = nodename.rpartition("@")
    return _expand(template, {"p": nodename, "n": name or host, "h": host,
                              "d": host.partition(".")[2], "i": "0", "I": "", "%": "%"})


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a pid reused by this very process: the file is stale
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True  # alive, and someone else's
    return True


@contextmanager
def pidfile(path: str) -> Iterator[None]:
    """Hold ``path`` with this process's pid while the block runs; refuse to start when
    the pid in it is alive, replace it when stale, remove it at the end."""
    target = Path(path)
    try:
        old = target.read_text().strip()
    except FileNotFoundError:
        old = ""
    except OSError as error:
        raise ConfigurationError(f"--pidfile {path}: {error.strerror}") from None
    if old.isdigit() and _running(int(old)):
        raise ConfigurationError(
            f"--pidfile {path}: process {old} is running; stop it first, or give this "
            "worker its own pidfile (e.g. --pidfile=/run/pgqueue/%n.pid with -n)")
    mine = str(os.getpid())
    try:
        target.unlink(missing_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as error:
        raise ConfigurationError(f"--pidfile {path}: {error.strerror}") from None
    with os.fdopen(fd, "w") as file:
        file.write(f"{mine}\n")
    try:
        yield
    finally:
        with suppress(OSError):
            if target.read_text().strip() == mine:
                target.unlink()
