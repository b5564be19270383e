"""A dedicated LISTEN connection that survives restarts of the server."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from pgqueue import db
from pgqueue.db import queries
from pgqueue.db.connection import Outage

logger = logging.getLogger("pgqueue.listener")


class Listener(threading.Thread):
    """LISTENs on ``channels`` and calls ``on_notify(channel, payload)`` for each message.

    After every (re)connect ``on_connect`` runs, so that callers re-check state they may
    have missed while the connection was down.

    With ``dsn=None`` (no direct connection to LISTEN on, behind a transaction pooler) it
    polls instead: it is ready at once and calls ``on_connect`` every ``poll_interval``
    seconds, so callers re-check then what a notification would have told them.
    """

    def __init__(
        self,
        dsn: str | None,
        channels: Sequence[str],
        on_notify: Callable[[str, str], None],
        on_connect: Callable[[], None] | None = None,
        name: str = "pgqueue-listener",
        ping_interval: float = 5.0,
        application_name: str = "pgqueue:listener",
        poll_interval: float = 1.0,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.dsn = dsn
        self.channels = list(channels)
        self.on_notify = on_notify
        self.on_connect = on_connect
        self.ping_interval = ping_interval
        self.application_name = application_name
        self.poll_interval = poll_interval
        self.ready = threading.Event()
        self._stopping = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._outage = Outage(name)

    def stop(self) -> None:
        self._stopping.set()

    @property
    def polling(self) -> bool:
        """True when there is no LISTEN connection, only polling."""
        return self.dsn is None

    def run(self) -> None:
        if self.dsn is None:
            self._poll()
            return
        while not self._stopping.is_set():
            try:
                self._listen()
            except Exception as error:
                self.ready.clear()
                if not db.is_connection_error(error):
                    logger.exception("%s: unexpected error", self.name)
                self._stopping.wait(self._outage.failed(error))
            finally:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

    def _poll(self) -> None:
        self.ready.set()
        while True:
            if self.on_connect is not None:
                try:
                    self.on_connect()
                except Exception:
                    logger.exception("%s: unexpected error", self.name)
            if self._stopping.wait(self.poll_interval):
                return

    def _listen(self) -> None:
        assert self.dsn is not None
        conn = self._conn = db.connect(self.dsn, application_name=self.application_name)
        for channel in self.channels:
            conn.execute(queries.listen(channel))
        self._outage.recovered()
        self.ready.set()
        if self.on_connect is not None:
            self.on_connect()
        last_ping = time.monotonic()
        while not self._stopping.is_set():
            for note in conn.notifies(timeout=0.25):
                self.on_notify(note.channel, note.payload)
            # A silent network partition never wakes notifies(); a ping notices it.
            if time.monotonic() - last_ping > self.ping_interval:
                conn.execute(queries.PING)
                last_ping = time.monotonic()
