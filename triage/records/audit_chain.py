"""The audit log made tamper-evident: events sealed, in batches, into a hash chain.

One process (the leading listener) seals every few seconds, so writers of audit rows never wait
on the chain. A seal covers every event id after the previous seal's last, up to its own last, and
its digest is SHA-256 over the previous seal's digest and those events' canonical form. Changing,
removing or inserting an event below the newest seal, or editing a seal, breaks the chain where
it happened; ``verify`` finds it. What the chain cannot show by itself is the newest seals cut off
together with their events: the head digest ``verify`` prints is what an operator keeps elsewhere
and compares to rule that out (the syslog forwarder sends the events off the host, not the seals).

On PostgreSQL an event's id is taken when it is inserted, not when it commits, so a transaction
still open can commit a lower id after a higher one is visible: whatever reads the log in id order
(the sealer, the syslog forwarder) reads only up to ``settled_horizon``, below which no event can
still appear. Events are also sealed only once they are ``SEAL_GRACE`` old, so that a seal covers
a few seconds' events rather than chasing each new one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from triage.records.tables import AuditEvent, AuditSeal

GENESIS = "0" * 64
SEAL_GRACE = timedelta(seconds=30)
SEAL_INTERVAL_SECONDS = 10.0
BATCH = 5000


def canonical(event: AuditEvent) -> bytes:
    """One event as the bytes the chain hashes: every column, in a fixed order, as JSON."""
    fields = [event.id, event.at.isoformat(), event.actor, event.action, event.study_id, event.source]
    return json.dumps([*fields, event.detail], ensure_ascii=False, separators=(",", ":")).encode()


def chain_digest(previous: str, events: Sequence[AuditEvent]) -> str:
    digest = hashlib.sha256(previous.encode("ascii"))
    for event in events:
        digest.update(b"\n")
        digest.update(canonical(event))
    return digest.hexdigest()


# How long the horizon waits for writers of audit rows still open; past it the pass is skipped, so a
# long transaction delays the reader, never the writers queued behind the reader's lock request.
HORIZON_LOCK_TIMEOUT_MS = 200


def settled_horizon(session: Session) -> int | None:
    """The highest audit event id at or below which every event that will ever exist is visible now
    (0: none yet); None when that cannot be told now (a writer stayed open past the lock timeout).

    SQLite serialises writers (each write transaction holds the database's write lock from its
    first statement), so ids commit in order and the highest visible id is settled. PostgreSQL takes
    a SHARE lock on the table for the rest of the caller's transaction: it waits for every
    transaction that inserted an event to end and lets no insert start, so after it no lower id can
    still commit, and ids taken afterwards are higher (one sequence). Keep that transaction short.
    """
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        try:
            with session.begin_nested():
                session.execute(text(f"SET LOCAL lock_timeout = '{HORIZON_LOCK_TIMEOUT_MS}ms'"))
                session.execute(text(f"LOCK TABLE {AuditEvent.__tablename__} IN SHARE MODE"))
        except OperationalError:
            return None
    return session.scalar(select(func.coalesce(func.max(AuditEvent.id), 0)))


def head(session: Session) -> AuditSeal | None:
    """The newest seal (None before the first)."""
    return session.scalars(select(AuditSeal).order_by(AuditSeal.last_event_id.desc()).limit(1)).first()


def seal(
    session: Session, now: datetime, grace: timedelta = SEAL_GRACE, batch: int = BATCH
) -> AuditSeal | None:
    """Seal the events after the head that are at least ``grace`` old (up to ``batch`` of them).

    Returns the new seal, or None when nothing was ready. Two sealers racing (a CLI run beside the
    leader) both start at the same id; the unique first_event_id lets only one commit."""
    horizon = settled_horizon(session)
    if horizon is None:
        return None
    last = head(session)
    after, previous = (last.last_event_id, last.digest) if last else (0, GENESIS)
    too_recent = session.scalar(
        select(func.min(AuditEvent.id)).where(AuditEvent.id > after, AuditEvent.at > now - grace)
    )
    query = (
        select(AuditEvent)
        .where(AuditEvent.id > after, AuditEvent.id <= horizon)
        .order_by(AuditEvent.id)
        .limit(batch)
    )
    if too_recent is not None:
        query = query.where(AuditEvent.id < too_recent)
    events = session.scalars(query).all()
    if not events:
        return None
    sealed = AuditSeal(
        sealed_at=now,
        first_event_id=after + 1,
        last_event_id=events[-1].id,
        events=len(events),
        previous_digest=previous,
        digest=chain_digest(previous, events),
    )
    session.add(sealed)
    session.flush()
    return sealed


@dataclass
class Verification:
    """What ``verify`` found: how much is sealed, the head digest, and every break in the chain."""

    seals: int = 0
    sealed_events: int = 0
    unsealed_events: int = 0
    head_digest: str = GENESIS
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def verify(session: Session) -> Verification:
    """Recompute every seal from the events it covers, in order, and report where the chain breaks."""
    found = Verification()
    after, previous = 0, GENESIS
    for sealed in session.scalars(select(AuditSeal).order_by(AuditSeal.first_event_id)):
        found.seals += 1
        where = f"seal {sealed.id} (events {sealed.first_event_id}..{sealed.last_event_id})"
        if sealed.first_event_id != after + 1:
            found.problems.append(f"{where}: does not follow the previous seal, which ends at {after}")
        if sealed.previous_digest != previous:
            found.problems.append(f"{where}: names a previous digest that is not the previous seal's")
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.id >= sealed.first_event_id, AuditEvent.id <= sealed.last_event_id)
            .order_by(AuditEvent.id)
        ).all()
        if len(events) != sealed.events:
            found.problems.append(f"{where}: holds {len(events)} events, {sealed.events} were sealed")
        if chain_digest(sealed.previous_digest, events) != sealed.digest:
            found.problems.append(f"{where}: digest does not match: an event was changed, removed or added")
        found.sealed_events += len(events)
        after, previous = sealed.last_event_id, sealed.digest
    found.head_digest = previous
    unsealed = select(func.count(AuditEvent.id)).where(AuditEvent.id > after)
    found.unsealed_events = session.scalar(unsealed) or 0
    return found
