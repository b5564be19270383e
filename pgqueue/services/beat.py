"""``pgqueue beat``: a process hosting the scheduler and the leader's maintenance services."""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

from pgqueue import __version__, db, signals
from pgqueue.services.maintenance import Maintenance, leader_services
from pgqueue.services.scheduler import Scheduler
from pgqueue.utils import hostname, uuid7

if TYPE_CHECKING:
    from pgqueue.app import App

logger = logging.getLogger("pgqueue.beat")


class Beat:
    """``pgqueue beat``: the scheduler, and the maintenance services when it holds the
    lease, without a worker. Any number may run, alongside ``pgqueue worker --beat`` too.
    """

    def __init__(self, app: App, *, name: str | None = None, code_schedules: bool = True,
                 install_signal_handlers: bool = True) -> None:
        app.finalize()
        self.app = app
        self.holder = f"{name or 'beat@' + hostname()}:{os.getpid()}:{uuid7().hex[-6:]}"
        self.scheduler = Scheduler(app, code_schedules=code_schedules)
        self.install_signal_handlers = install_signal_handlers
        self.started = threading.Event()
        self._stopping = threading.Event()
        self._signals = 0

    def services(self) -> list[Any]:
        return [*leader_services(self.app), self.scheduler]

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        """Run until :meth:`stop` or SIGTERM/SIGINT."""
        app = self.app
        with app.connection("worker") as conn:  # clear errors now: no schema, no grant
            conn.execute(app.queries["leader_get"])
        maintenance = Maintenance(app, self.holder, self.services(), name="pgqueue-beat")
        if self.install_signal_handlers and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        maintenance.start()
        signals.beat_init.send_contained(sender=self)
        entries = self.scheduler.entries
        logger.info("pgqueue %s beat %s ready\n  database: %s (schema %s)\n"
                    "  schedules from code: %s", __version__, self.holder,
                    db.describe(app.dsn), app.schema,
                    "not managed (no app given)" if entries is None
                    else ", ".join(e.name for e in entries) or "(none)")
        self.started.set()
        try:
            while not self._stopping.wait(1.0):
                pass
        finally:
            maintenance.stop()
            app.close()
            logger.info("Beat %s stopped", self.holder)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            os._exit(1)
        logger.warning("%s received: stopping", signal.Signals(signum).name)
        self.stop()
