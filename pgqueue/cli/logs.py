"""Celery's logging signals, for the ``worker`` and ``beat`` commands.

A command sets logging up before it imports the app, so that import errors are logged.
Once the app is imported its receivers are known, and :func:`hand_over` follows
Celery: with a ``setup_logging`` receiver connected, pgqueue takes back the handler it
installed and the receivers configure logging themselves; otherwise
``after_setup_logger`` (the root logger) and ``after_setup_task_logger`` (the
``pgqueue.worker`` logger, which logs every task's outcome: pgqueue has no separate task
logger) let receivers add to pgqueue's set-up.
"""

from __future__ import annotations

import logging
import sys

from pgqueue import signals


def hand_over(loglevel: str) -> None:
    level = logging.getLevelName(loglevel.upper())
    root = logging.getLogger()
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
