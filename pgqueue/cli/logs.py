"""Celery's logging signals, for the ``worker`` and ``beat`` commands.

A command sets logging up before it imports the app, so that import errors are logged.
Once the app is imported its receivers are known, and :func:`hand_over` follows
Celery: with a ``setup_logging`` receiver connected, pgqueue takes back the handler it
installed and the receivers configure logging themselves; otherwise
``after_setup_logger`` (the root logger) and ``after_setup_task_logger`` (the
``pgqueue.worker`` logger, which logs every task's outcome: pgqueue has no separate task
logger) let receivers add to pgqueue's set-up.

The app's ``worker_log_format`` (when set) formats pgqueue's handler, and
``worker_hijack_root_logger`` decides, as in Celery, whose handlers the root logger keeps
when the app's import configured logging too: pgqueue's alone (True, the default), or the
app's alone (False).
"""

from __future__ import annotations

import logging
import sys

from pgqueue import signals
from pgqueue.config import Settings


def hand_over(loglevel: str, conf: Settings | None = None) -> None:
    level = logging.getLevelName(loglevel.upper())
    root = logging.getLogger()
    if conf is not None and root.handlers:  # the command's handler (stderr or --logfile)
        _apply_settings(root, root.handlers[0], conf)
    # The command's basicConfig() ran before the app was imported: its handler is first.
    ours = [h for h in root.handlers[:1]
            if isinstance(h, logging.StreamHandler) and h.stream is sys.stderr]
    form = ours[0].formatter._fmt if ours and ours[0].formatter else None
    details = {"loglevel": level, "logfile": None, "format": form, "colorize": False}
    if signals.setup_logging.receivers:
        for handler in ours:
            root.removeHandler(handler)
        root.setLevel(logging.WARNING)
        signals.setup_logging.send_contained(sender=None, **details)
        return
    signals.after_setup_logger.send_contained(sender=None, logger=root, **details)
    signals.after_setup_task_logger.send_contained(
        sender=None, logger=logging.getLogger("pgqueue.worker"), **details)


def _apply_settings(root: logging.Logger, ours: logging.Handler, conf: Settings) -> None:
    if "worker_log_format" in conf.changed and conf.worker_log_format:
        ours.setFormatter(logging.Formatter(str(conf.worker_log_format)))
    theirs = [h for h in root.handlers if h is not ours]
    if not theirs:
        return
    if conf.worker_hijack_root_logger:
        for handler in theirs:
            root.removeHandler(handler)
    else:
        root.removeHandler(ours)
