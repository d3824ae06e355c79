"""The audit trail's tables: the events, their seals in the hash chain, the forwarders' cursors.

Kept apart from ``tables`` (re-exported there): the audit trail is one concern, and the study
tables are long enough. The events are written by ``store.audit`` only.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from triage.records.db import Base, utcnow


class AuditEvent(Base):
    """Who did what to which patient's data, when, and from where."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"), index=True)
    source: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


class AuditSeal(Base):
    """One batch of audit events sealed into the chain: the digest covers the previous seal's
    digest and every event with an id in ``first_event_id``..``last_event_id`` (see audit_chain)."""

    __tablename__ = "audit_seals"

    id: Mapped[int] = mapped_column(primary_key=True)
    sealed_at: Mapped[datetime] = mapped_column(default=utcnow)
    first_event_id: Mapped[int] = mapped_column(unique=True)
    last_event_id: Mapped[int] = mapped_column(unique=True)
    events: Mapped[int]
    previous_digest: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))


class AuditCursor(Base):
    """How far a consumer of the audit log (the syslog forwarder) has got: the last event it
    delivered. Events after it are the spool."""

    __tablename__ = "audit_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    detail: Mapped[str] = mapped_column(Text, default="")
