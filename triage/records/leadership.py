"""Which process leads: recovers after a crash, monitors studies, reconciles leftovers, delivers.

Receivers may be several (listeners on other ports or hosts over the same database and storage),
but recovery and reconciliation must run in exactly one of them, or one would re-queue or delete
what another is doing. On PostgreSQL the leader holds a session-level advisory lock on a connection
of its own; the server drops it when that process or its connection dies, so another takes over.
On SQLite (one host) it holds an exclusive ``flock`` on a file under ``TRIAGE_HOME``.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from triage.records.db import Database

logger = logging.getLogger(__name__)

# pg_try_advisory_lock's key: "triage" in ASCII, so other applications' keys do not collide.
_ADVISORY_KEY = 0x747269616765


class Leadership:
    """Try to lead; check now and then that the lock is still ours."""

    def __init__(self, database: Database, lock_file: Path) -> None:
        self._database = database
        self._lock_file = lock_file
        self._postgres = database.engine.dialect.name == "postgresql"
        self._connection: Connection | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._connection is not None or self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if no other process holds it; True when this process leads now."""
        if self.held:
            return self.still_held()
        if self._postgres:
            return self._try_advisory_lock()
        self._lock_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        logger.info("this process leads: recovery, the study monitor and delivery run here")
        return True

    def _try_advisory_lock(self) -> bool:
        connection = self._database.engine.connect()
        try:
            query = text("SELECT pg_try_advisory_lock(:key)")
            got = bool(connection.execute(query, {"key": _ADVISORY_KEY}).scalar())
            connection.commit()  # the lock is the session's; no transaction stays open
        except SQLAlchemyError:
            connection.close()
            return False
        if not got:
            connection.invalidate()
            connection.close()
            return False
        self._connection = connection
        logger.info("this process leads: recovery, the study monitor and delivery run here")
        return True

    def still_held(self) -> bool:
        """Whether the lock is still ours (on PostgreSQL its connection may have died)."""
        if self._fd is not None:
            return True
        if self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1")).scalar()
            self._connection.commit()
        except SQLAlchemyError:
            logger.error("the leader's database connection was lost: this process no longer leads")
            self._drop()
            return False
        return True

    def release(self) -> None:
        self._drop()

    def _drop(self) -> None:
        if self._connection is not None:
            # Closed for real, not returned to the pool: the server ends the session and its lock.
            self._connection.invalidate()
            self._connection.close()
            self._connection = None
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
