"""Security events into the audit log without letting a flood of them stall anyone.

Refused associations, failed TLS handshakes, refused bearer tokens and 403s are what a probe or an
attack makes by the thousand. Each is recorded here in memory and written by a background thread
in one short transaction a second, identical events in that second counted into one row; past
``max_pending`` distinct events one row says how many more there were. So a flood costs the
database one write a second, never one per event (on SQLite every write waits for the one lock
that C-STORE commits need too).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from triage.records import store
from triage.records.audit_actions import AuditAction
from triage.records.db import Database

logger = logging.getLogger(__name__)


@dataclass
class _Pending:
    first_at: datetime
    count: int = 1


class SecurityLog:
    """Collects security events and writes them to the audit log every ``interval_seconds``."""

    def __init__(self, database: Database, interval_seconds: float = 1.0, max_pending: int = 1000) -> None:
        self._database = database
        self._interval = interval_seconds
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, AuditAction, str, str], _Pending] = {}
        self._suppressed = 0
        self._writer: threading.Thread | None = None
        self._stop = threading.Event()

    def record(self, *, actor: str, action: AuditAction, source: str, detail: str = "") -> None:
        """Note one event; it reaches the audit log within ``interval_seconds``. Never blocks on
        the database."""
        key = (actor[:128], action, source[:255], detail)
        with self._lock:
            pending = self._pending.get(key)
            if pending is not None:
                pending.count += 1
            elif len(self._pending) < self._max_pending:
                self._pending[key] = _Pending(self._database.now())
            else:
                self._suppressed += 1
            if self._writer is None:  # the first event opens the first interval
                self._stop.clear()
                self._writer = threading.Thread(target=self._write, name="security-audit", daemon=True)
                self._writer.start()

    def _write(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except Exception:  # the events are kept; the next pass tries again
                logger.exception("security events could not be written to the audit log")

    def flush(self) -> int:
        """Write what is pending now, in one transaction; the number of rows written."""
        with self._lock:
            pending, self._pending = self._pending, {}
            suppressed, self._suppressed = self._suppressed, 0
        if not pending and not suppressed:
            return 0
        try:
            with self._database.session() as session:
                for (actor, action, source, detail), seen in pending.items():
                    if seen.count > 1:
                        detail = f"{detail} ({seen.count} times from {seen.first_at.isoformat()})"
                    store.audit(
                        session, actor=actor, action=action, source=source, now=seen.first_at, detail=detail
                    )
                if suppressed:
                    store.audit(
                        session, actor="triage", action=AuditAction.AUDIT_SUPPRESSED, source="",
                        now=self._database.now(),
                        detail=f"{suppressed} more security events in {self._interval:g} s, beyond "
                        f"{self._max_pending} distinct ones, were not recorded one by one",
                    )  # fmt: skip
        except Exception:
            with self._lock:  # keep them for the next pass rather than lose them
                for key, seen in pending.items():
                    if key in self._pending:
                        self._pending[key].count += seen.count
                    else:
                        self._pending[key] = seen
                self._suppressed += suppressed
            raise
        return len(pending) + (1 if suppressed else 0)

    def close(self) -> None:
        """Stop the writer and write what is left."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            self._stop.set()
            writer.join()
        try:
            self.flush()
        except Exception:
            logger.exception("security events could not be written to the audit log at close")
