"""Which process leads: recovers after a crash, monitors studies, reconciles leftovers, delivers.

Receivers may be several (listeners on other ports or hosts over the same database and storage),
but recovery and reconciliation must run in exactly one of them, or one would re-queue or delete
what another is doing.

On PostgreSQL the leader holds a lease (``leader_lease``), renewed every few seconds and measured in
the database server's clock: when the leader's host dies, or its network goes without a word (no
FIN, no RST), the lease lapses after ``lease_seconds`` and another listener takes over. A
session-level advisory lock would be held by the server until its TCP keepalive gave up on the dead
peer, about 2 h 11 min with PostgreSQL's default settings, with no completion, delivery or seal
meanwhile. The leader counts its own lease as lapsed a little before the server does (its renewal
may hang on a dead network, and ``held`` reads only its own clock), so two never lead at once.

On SQLite (one host) it holds an exclusive ``flock`` on a file under ``TRIAGE_HOME``, which the
kernel releases when the process dies; the lease row is kept alongside for ``/readyz`` and the page.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from triage.records.db import Database
from triage.records.tables import LeaderLease

logger = logging.getLogger(__name__)
RELEASE_MARGIN = timedelta(seconds=1)

LEASE = "listener"
LEASE_SECONDS = 30.0
_SAFETY_MARGIN = 0.2  # the share of the lease the leader gives up early: clocks may run at other rates


@dataclass(frozen=True)
class LeaderState:
    """What the lease says of the lead now: who holds it, and for how long nobody has."""

    holder: str
    expires_at: datetime
    without_leader_seconds: float  # 0 while the lease runs


def leader_state(session: Session, now: datetime) -> LeaderState | None:
    """The lead as the lease row says (None: no listener ever led over this database)."""
    lease = session.get(LeaderLease, LEASE)
    if lease is None:
        return None
    return LeaderState(lease.holder, lease.expires_at, max(0.0, (now - lease.expires_at).total_seconds()))


class Leadership:
    """Try to lead; renew the lease now and then; give the lead up when it may have lapsed."""

    def __init__(self, database: Database, lock_file: Path, lease_seconds: float = LEASE_SECONDS) -> None:
        self._database = database
        self._lock_file = lock_file
        self._postgres = database.engine.dialect.name == "postgresql"
        self._lease = lease_seconds
        self._renew_every = lease_seconds / 6
        self.holder = f"{socket.gethostname()[:64]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._fd: int | None = None
        self._valid_until: float | None = None  # monotonic: the lead is ours until then
        self._renewed: float | None = None

    @property
    def held(self) -> bool:
        """Whether this process leads now (no query: its own clock against the lease it last got)."""
        if self._postgres:
            return self._valid_until is not None and time.monotonic() < self._valid_until
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take or renew the lead if no other process holds it; True when this process leads now."""
        if self._postgres:
            return self._try_lease()
        if self._fd is not None:
            self._renew_report()
            return True
        self._lock_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        logger.info("this process leads: recovery, the study monitor and delivery run here")
        self._renew_report()
        return True

    def still_held(self) -> bool:
        """Whether the lead is still ours, asking the database on PostgreSQL."""
        if self._postgres:
            self._renewed = None  # renew now
            return self._try_lease()
        return self._fd is not None

    def _try_lease(self) -> bool:
        started = time.monotonic()
        if self.held and self._renewed is not None and started - self._renewed < self._renew_every:
            return True
        was_held = self.held
        try:
            got = self._claim()
        except SQLAlchemyError as error:
            logger.warning("the leader's lease could not be renewed: %s", type(error).__name__)
            return self.held  # still ours until it may have lapsed, then no longer
        if got:
            # Measured from before the claim: the server's expiry is at least this late.
            self._valid_until = started + self._lease * (1 - _SAFETY_MARGIN)
            self._renewed = started
            if not was_held:
                logger.info("this process leads: recovery, the study monitor and delivery run here")
        else:
            if was_held:
                logger.error("the leader's lease went to another process: this process no longer leads")
            self._valid_until = None
        return got

    def _claim(self) -> bool:
        """Insert or renew the lease row for this process, unless another holds a lease that runs
        (on SQLite the file lock decides, and the row follows it)."""
        now = self._database.now()
        expires = now + timedelta(seconds=self._lease)
        insert = postgresql.insert if self._postgres else sqlite.insert
        statement = (
            insert(LeaderLease)
            .values(name=LEASE, holder=self.holder, renewed_at=now, expires_at=expires)
            .on_conflict_do_update(
                index_elements=[LeaderLease.name],
                set_={"holder": self.holder, "renewed_at": now, "expires_at": expires},
                where=(LeaderLease.holder == self.holder) | (LeaderLease.expires_at < now)
                if self._postgres
                else None,
            )
            .returning(LeaderLease.holder)
        )
        with self._database.session() as session:
            return session.execute(statement).scalar() == self.holder

    def _renew_report(self) -> None:
        """SQLite: keep the lease row, which only reports the lead the file lock holds."""
        now = time.monotonic()
        if self._renewed is not None and now - self._renewed < self._renew_every:
            return
        try:
            self._claim()
            self._renewed = now
        except SQLAlchemyError as error:
            logger.warning("the leader's lease row could not be written: %s", type(error).__name__)

    def release(self) -> None:
        """Give the lead up now: the next listener to ask takes it at once."""
        if self._valid_until is not None or self._fd is not None:
            try:
                with self._database.session() as session:
                    session.execute(
                        update(LeaderLease)
                        .where(LeaderLease.name == LEASE, LeaderLease.holder == self.holder)
                        # A second in the past: another process's reading of the server's clock may
                        # trail this one's by the milliseconds of a query (seen as a failed handover).
                        .values(expires_at=self._database.now() - RELEASE_MARGIN)
                    )
            except SQLAlchemyError as error:
                logger.warning("the leader's lease could not be given up: %s", type(error).__name__)
        self._valid_until = self._renewed = None
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
