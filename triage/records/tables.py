"""The tables of the system of record: studies, versions, instances, results, deliveries, accounts,
readings, the outbox and the audit trail."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship

from triage.outcomes import OUTCOME, BreastOutcome, FractureOutcome
from triage.records.audit_tables import AuditCursor as AuditCursor
from triage.records.audit_tables import AuditEvent as AuditEvent
from triage.records.audit_tables import AuditSeal as AuditSeal
from triage.records.db import Base, utcnow
from triage.records.status_tables import PACS as PACS
from triage.records.status_tables import PEER_CHECK_SECONDS as PEER_CHECK_SECONDS
from triage.records.status_tables import PROCESS_STATUS_PREFIX as PROCESS_STATUS_PREFIX
from triage.records.status_tables import DecisionOverride as DecisionOverride
from triage.records.status_tables import LeaderLease as LeaderLease
from triage.records.status_tables import PeerStatus as PeerStatus
from triage.records.work_tables import Commitment as Commitment
from triage.records.work_tables import CommitmentState as CommitmentState
from triage.records.work_tables import Delivery as Delivery
from triage.records.work_tables import DeliveryState as DeliveryState
from triage.records.work_tables import Hl7Cursor as Hl7Cursor
from triage.records.work_tables import Hl7Message as Hl7Message
from triage.records.work_tables import OutboxMessage as OutboxMessage


class OutcomeJSON(TypeDecorator[FractureOutcome | BreastOutcome]):
    """A typed outcome stored as its JSON (``pipeline`` tells the two kinds apart)."""

    impl = JSON
    cache_ok = True

    def process_bind_param(
        self, value: FractureOutcome | BreastOutcome | None, dialect: Dialect
    ) -> dict[str, Any] | None:
        return None if value is None else value.model_dump(mode="json")

    def process_result_value(self, value: Any, dialect: Dialect) -> FractureOutcome | BreastOutcome | None:
        return None if value is None else OUTCOME.validate_python(value)


class StudyState(enum.StrEnum):
    """Where one version of a study stands. Final states need nothing more from triage."""

    RECEIVING = "RECEIVING"
    COMPLETE = "COMPLETE"
    QUEUED = "QUEUED"
    ANALYSING = "ANALYSING"
    ANALYSED = "ANALYSED"
    REPORTED = "REPORTED"
    NOT_ANALYSED = "NOT_ANALYSED"  # the conservative path: normal (or double) reading, with a reason
    IGNORED = "IGNORED"  # not a study triage analyses: stored, reason recorded
    SUPERSEDED = "SUPERSEDED"  # a later version of the same study replaced it before it was analysed


class Study(Base):
    """One DICOM study, identified by its Study Instance UID; holds the patient data the worklist shows."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    issuer_of_patient_id: Mapped[str] = mapped_column(String(64), default="")
    patient_name: Mapped[str] = mapped_column(String(324), default="")
    patient_birth_date: Mapped[str] = mapped_column(String(8), default="")
    accession_number: Mapped[str] = mapped_column(String(16), default="", index=True)  # outcomes match it
    study_date: Mapped[str] = mapped_column(String(8), default="")
    study_description: Mapped[str] = mapped_column(String(64), default="")
    conflict: Mapped[bool] = mapped_column(default=False)
    current_version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    versions: Mapped[list[StudyVersion]] = relationship(
        back_populates="study", order_by="StudyVersion.number"
    )
    instances: Mapped[list[Instance]] = relationship(back_populates="study")


class StudyVersion(Base):
    """A study as it stood when it was judged complete; late images open the next version."""

    __tablename__ = "study_versions"
    __table_args__ = (
        UniqueConstraint("study_id", "number"),
        Index("ix_study_versions_state", "state"),
        # The worklist's queues: filtered, ordered and limited in SQL, at a region's years of studies.
        Index("ix_study_versions_queue", "pipeline", "urgency", "opened_at"),
        Index("ix_study_versions_urgency", "urgency", "opened_at"),
        Index("ix_study_versions_verdict", "verdict", "opened_at"),
        Index("ix_study_versions_opened", "opened_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    number: Mapped[int]
    state: Mapped[StudyState] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    pipeline: Mapped[str] = mapped_column(String(32), default="")
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_instance_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    result_due_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    # The verdict that acts and how urgent it is (0 FRACTURE or high risk, 1 DOUBT, 2 the rest), as
    # triage.records.verdicts.settle wrote them when the state, the result or the deliveries changed.
    verdict: Mapped[str] = mapped_column(String(16), default="PENDING")
    urgency: Mapped[int] = mapped_column(SmallInteger, default=2)
    # Seconds from completion to the PACS acknowledging every result object (REPORTED), for metrics.
    reported_seconds: Mapped[float | None] = mapped_column(Float)

    study: Mapped[Study] = relationship(back_populates="versions")
    changes: Mapped[list[StateChange]] = relationship(back_populates="version", order_by="StateChange.id")


class Instance(Base):
    """One stored SOP instance: where it lies, its content hash, and the header facts routing needs."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    version_number: Mapped[int]
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    series_instance_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    calling_ae_title: Mapped[str] = mapped_column(String(16))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When the original left storage under the retention setting (the row, its hash and the results
    # stay); None: it is on disk.
    removed_at: Mapped[datetime | None]
    # Whether routing sent it to a pipeline (what the model reads): the study page shows only these.
    routed: Mapped[bool] = mapped_column(default=False)

    study: Mapped[Study] = relationship(back_populates="instances")


class StateChange(Base):
    """The history of a study version: every state it entered, when, and why."""

    __tablename__ = "state_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("study_versions.id"), index=True)
    state: Mapped[StudyState] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)

    version: Mapped[StudyVersion] = relationship(back_populates="changes")


class QuarantinedObject(Base):
    """A received object kept aside: undecodable, inconsistent, or conflicting with what we hold."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(primary_key=True)
    storage_key: Mapped[str] = mapped_column(String(255))
    sop_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    study_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    sha256: Mapped[str] = mapped_column(String(64))
    calling_ae_title: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A duplicate whose bytes differ is compared with the stored instance after it is quarantined:
    # PENDING, SAME (the same image, re-sent in another transfer syntax), DIFFERS; RESOLVED once an
    # admin cleared the study's conflict. Empty: not a duplicate (a refused object).
    comparison: Mapped[str] = mapped_column(String(16), default="")


class Comparison:
    PENDING, SAME, DIFFERS, RESOLVED = "pending", "same", "differs", "resolved"


class Result(Base):
    """What a model said about one study version, and everything needed to trust or redo it."""

    __tablename__ = "results"
    __table_args__ = (Index("ix_results_pipeline_created_at", "pipeline", "created_at"),)  # the drift window

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("study_versions.id"), unique=True)
    pipeline: Mapped[str] = mapped_column(String(32))
    analysed: Mapped[bool]
    summary: Mapped[str] = mapped_column(Text)
    model_name: Mapped[str] = mapped_column(String(128), default="")
    model_version: Mapped[str] = mapped_column(String(64), default="")
    weights_sha256: Mapped[str] = mapped_column(String(64), default="")
    software_version: Mapped[str] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(32), default="")
    outcome: Mapped[FractureOutcome | BreastOutcome] = mapped_column(OutcomeJSON)
    score: Mapped[int | None] = mapped_column(SmallInteger)  # a screen's 1-10 score, for counting in SQL
    # The exam probability and the scanner (manufacturer and model of its first image), for the
    # score drift per scanner counted in SQL.
    probability: Mapped[float | None] = mapped_column(Float)
    scanner: Mapped[str] = mapped_column(String(128), default="")
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    timings_ms: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Role(enum.StrEnum):
    """What a person may do: read studies and give feedback; export de-identified labels; administer."""

    RADIOLOGIST = "radiologist"
    ML_ENGINEER = "ml_engineer"
    ADMIN = "admin"


class User(Base):
    """A local account (the embedded default); OIDC users are not stored, their token names them."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id, PHC string format
    roles: Mapped[str] = mapped_column(String(128))  # comma-separated Role values
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def role_set(self) -> frozenset[Role]:
        return frozenset(Role(part) for part in self.roles.split(",") if part)


class ApiSession(Base):
    """A signed-in local account; only the token's SHA-256 is kept, so a database leak logs nobody in."""

    __tablename__ = "api_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(255), default="")

    user: Mapped[User] = relationship()


class FeedbackKind(enum.StrEnum):
    """What a radiologist's reading says; ``value`` is yes or no."""

    FRACTURE = "FRACTURE"  # trauma: a fracture is present
    RECALL = "RECALL"  # screen: the woman is recalled for assessment
    CANCER = "CANCER"  # screen, later: the outcome was cancer


class Feedback(Base):
    """A radiologist's reading of a study, linked to the result it judges: tomorrow's training label."""

    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_kind_at", "kind", "at"),)  # the live evidence's window

    id: Mapped[int] = mapped_column(primary_key=True)
    label_id: Mapped[str] = mapped_column(String(32), unique=True)  # opaque, the only id an export shows
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("study_versions.id"))
    result_id: Mapped[int | None] = mapped_column(ForeignKey("results.id"))
    kind: Mapped[FeedbackKind] = mapped_column(String(16))
    value: Mapped[bool]
    # [{"sop_instance_uid": ..., "corners": [x0, y0, x1, y1]}] in source pixels, as results keep them
    boxes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    comment: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ShadowResult(Base):
    """What a candidate model said about a study in shadow mode: stored to compare, never routed or sent."""

    __tablename__ = "shadow_results"
    __table_args__ = (UniqueConstraint("version_id", "model_name", "model_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("study_versions.id"), index=True)
    pipeline: Mapped[str] = mapped_column(String(32))
    analysed: Mapped[bool]
    summary: Mapped[str] = mapped_column(Text)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    weights_sha256: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[FractureOutcome | BreastOutcome] = mapped_column(OutcomeJSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
