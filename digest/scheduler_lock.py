"""One scheduler among several `digest run` daemons on one PostgreSQL database.

Each daemon ingests on its own schedule, but only the one holding the scheduler lock (a session-level advisory
lock, on a database connection of its own) fires the scheduled sends, so two daemons never double the schedule.
The others ask for the lock again at each turn (each ingest, each subscriber's slot); when the holder dies, its
connection closes, the server drops its lock, and the next daemon to ask takes over, starting with a catch-up
send to everyone due (the slots that passed while nobody held the lock). Even two daemons that both believed they
held it could not send a digest twice: the send claims and the ledger see to that (digest.claims). With SQLite
there is one host and the send lock: the lock is always held.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from digest.config import Config
from digest.errors import StoreError
from digest.store import Store, open_store

log = logging.getLogger(__name__)


class SchedulerLock:
    """Whether this daemon fires the scheduled sends. Call close() when the daemon stops. Safe to ask from the
    scheduler's job threads (one question at a time on its connection)."""

    def __init__(self, config: Config, *, opener: Callable[[Config], Store] = open_store) -> None:
        self._config = config
        self._opener = opener
        self._store: Store | None = None
        self._held = config.database.url is None
        self._gained = False
        self._lock = threading.Lock()

    def held(self) -> bool:
        """True while this daemon holds the lock; asks for it when it does not (never waits)."""
        if self._config.database.url is None:
            return True
        with self._lock:
            return self._ask()

    def _ask(self) -> bool:
        if self._held and self._store is not None:
            try:
                self._store.ping()
                return True
            except Exception as exc:  # the connection is gone, and the lock with it
                log.warning("scheduler lock lost (%s); asking for it again", exc)
                self._drop()
        try:
            if self._store is None:
                self._store = self._opener(self._config)
            self._held = self._store.try_scheduler_lock()
        except StoreError as exc:
            log.warning("scheduler lock: %s", exc)
            self._drop()
            return False
        if self._held:
            self._gained = True
            log.info("this daemon holds the scheduler lock: it fires the scheduled sends")
        return self._held

    def took_over(self) -> bool:
        """True once after the lock was taken (the caller sends to everyone due: slots may have passed)."""
        with self._lock:
            gained, self._gained = self._gained, False
        return gained

    def _drop(self) -> None:
        held, self._held = self._held, False
        if self._store is not None:
            try:
                if held:
                    self._store.release_scheduler_lock()
                self._store.close()
            except Exception:  # a connection already gone has nothing to close
                pass
            self._store = None

    def close(self) -> None:
        """Let the lock go (closing the connection releases it)."""
        with self._lock:
            self._drop()
