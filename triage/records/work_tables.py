"""The tables of work still to do, each row until it is done: tasks for the broker (the outbox),
result objects for the PACS (deliveries) and HL7 messages for the RIS."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from triage.records.db import Base, utcnow


class OutboxMessage(Base):
    """A task to publish to the broker, written in the same transaction as the state it follows from."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "published_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_name: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")


class DeliveryState(enum.StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"  # terminal: tries exhausted, visible, the study stays conservative


class Delivery(Base):
    """One DICOM object (SR or summary image) to store at the PACS, retried until acknowledged."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("study_versions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    storage_key: Mapped[str] = mapped_column(String(255))
    # The same content in another SOP class (Comprehensive SR beside Comprehensive 3D SR), sent instead
    # when the PACS accepts only that; sent_storage_key is what the PACS acknowledged.
    alternate_storage_key: Mapped[str] = mapped_column(String(255), default="")
    sent_storage_key: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[DeliveryState] = mapped_column(String(16), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class Hl7Message(Base):
    """One HL7 ORU^R01 for the RIS, built when a version entered a final state (``state_change_id``:
    at most one message per change, so queueing twice queues once) and sent until acknowledged.

    Unlike a delivery it never gates a verdict: it reports what already acts (REPORTED) or the
    conservative path (NOT ANALYSED), so a failure leaves the study as it is, visibly."""

    __tablename__ = "hl7_messages"
    __table_args__ = (Index("ix_hl7_messages_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("study_versions.id"), index=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    state_change_id: Mapped[int] = mapped_column(ForeignKey("state_changes.id"), unique=True)
    control_id: Mapped[str] = mapped_column(String(20), unique=True)  # MSH-10
    result_status: Mapped[str] = mapped_column(String(1))  # OBR-25: P preliminary, C correction
    message: Mapped[str] = mapped_column(Text)  # ER7, segments ended by carriage returns
    state: Mapped[DeliveryState] = mapped_column(String(16), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    ack_code: Mapped[str] = mapped_column(String(2), default="")  # MSA-1 of the last answer
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class Hl7Cursor(Base):
    """How far the HL7 sender has read the state changes: the last id it has queued messages for.
    It starts where the history stood when HL7 was first configured (no backfill of old studies)."""

    __tablename__ = "hl7_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    since_change_id: Mapped[int]  # the newest change when HL7 was configured: nothing up to it is sent
    last_change_id: Mapped[int]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CommitmentState(enum.StrEnum):
    PENDING = "PENDING"  # to be requested (N-ACTION) when due
    REQUESTED = "REQUESTED"  # the PACS took the request; its report (N-EVENT-REPORT) is awaited
    COMMITTED = "COMMITTED"  # every object committed: the version is REPORTED
    RETRIED = "RETRIED"  # closed: objects re-sent after a failure report, or no report in time
    FAILED = "FAILED"  # the version's objects could not be committed within the bounds


class Commitment(Base):
    """One storage commitment request (PS3.4 Annex J, push model) for every result object of a
    version the PACS acknowledged: the version is REPORTED only when the PACS commits them all."""

    __tablename__ = "commitments"
    __table_args__ = (Index("ix_commitments_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("study_versions.id"), index=True)
    transaction_uid: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[CommitmentState] = mapped_column(String(16), default=CommitmentState.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)  # N-ACTION tries of this request
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    report_due_at: Mapped[datetime | None]
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    settled_at: Mapped[datetime | None]
