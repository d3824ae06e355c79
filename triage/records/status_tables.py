"""The tables of what the processes report of themselves and their peers (the leader's lease, each
destination's and each `triage serve` child's last known state) and of the admins' overrides of the
evidence gate."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from triage.records.db import Base

PACS = "pacs"  # the peer status of the configured PACS
PROCESS_STATUS_PREFIX = "process:"  # peer status rows of triage serve's children ("process:worker")
PEER_CHECK_SECONDS = 15.0  # how often the delivering process asks each destination (C-ECHO)


class LeaderLease(Base):
    """Who leads over this database, until when (the database server's clock). On PostgreSQL the
    lease is the lead itself; on SQLite a file lock is, and the lease only reports it."""

    __tablename__ = "leader_lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    renewed_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class PeerStatus(Base):
    """What the process that delivers results last found of a destination (C-ECHO), for the web app."""

    __tablename__ = "peer_status"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    reachable: Mapped[bool]
    detail: Mapped[str] = mapped_column(Text, default="")
    checked_at: Mapped[datetime]


class DecisionOverride(Base):
    """One admin act: ``decision`` enabled for one model version against its evidence."""

    __tablename__ = "decision_overrides"
    __table_args__ = (Index("ix_decision_overrides_model", "model_name", "model_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(128))


class DecisionSwitch(Base):
    """One change of a decision's switch for a pipeline: switched off (by the live evidence or an
    admin) or resumed (by an admin, with a reason). The last row per pipeline and decision is its
    state; none: on (the evidence gate alone decides)."""

    __tablename__ = "decision_switches"
    __table_args__ = (Index("ix_decision_switches_pipeline", "pipeline", "decision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(32))
    decision: Mapped[str] = mapped_column(String(16))
    off: Mapped[bool]
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime]


class ModelReference(Base):
    """A model a worker put into service, with the reference its scores are compared with: the nine
    deciles of its exam probability on held-out exams (its card's), so the score drift per scanner
    can be measured by processes that never load the model."""

    __tablename__ = "model_references"
    __table_args__ = (UniqueConstraint("model_name", "model_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    pipeline: Mapped[str] = mapped_column(String(32))
    deciles: Mapped[list[float]] = mapped_column(JSON)  # empty: the card gives no reference
    first_loaded_at: Mapped[datetime]


class InboundMessage(Base):
    """An HL7 message a hospital system sent triage (a final result, a pathology result, a discharge
    diagnosis), kept whole whatever came of it: matched to a study and read as outcomes, kept
    unmatched for an admin, or rejected with why. None is lost; a re-sent one is recognised."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        UniqueConstraint("sending_application", "control_id"),
        Index("ix_inbound_messages_state", "state", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sending_application: Mapped[str] = mapped_column(String(64))
    control_id: Mapped[str | None] = mapped_column(String(64))  # None: the message had none
    message_type: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))  # MATCHED, UNMATCHED, REJECTED
    detail: Mapped[str] = mapped_column(Text)
    accession_number: Mapped[str] = mapped_column(String(64), default="")
    study_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"))
    outcomes: Mapped[list[str]] = mapped_column(JSON, default=list)  # e.g. ["FRACTURE=yes"]
    raw: Mapped[str] = mapped_column(Text)  # the message as received (patient data: never logged)
    received_at: Mapped[datetime]


class Discrepancy(Base):
    """A patient an AI decision touched wrongly, found from an outcome: a fracture on a study cleared
    as NO FRACTURE, a cancer after a screen sent to one reader, a recall after a screen scored low.
    It heads the Recall queue until a radiologist records that the patient was contacted and what
    was done; the people the site names are notified (webhook, e-mail) until it reaches them."""

    __tablename__ = "discrepancies"
    __table_args__ = (
        UniqueConstraint("study_id", "kind"),
        Index("ix_discrepancies_open", "closed_at", "id"),
        Index("ix_discrepancies_notify", "notified_at", "notify_next_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("study_versions.id"))
    kind: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(128))  # who or what reported the outcome
    detail: Mapped[str] = mapped_column(Text)
    found_at: Mapped[datetime]
    notified_at: Mapped[datetime | None]
    notify_attempts: Mapped[int] = mapped_column(default=0)
    notify_next_at: Mapped[datetime | None]
    notify_error: Mapped[str] = mapped_column(Text, default="")
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(128))
    contact_note: Mapped[str] = mapped_column(Text, default="")


class DecisionChange(Base):
    """A change to what a model may decide, proposed by one admin with its what-if on the site's own
    recent studies, in force only once a second admin approves it, from a stated time: a decision
    enabled for a model version against its card's evidence, or a new single-reading threshold."""

    __tablename__ = "decision_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(32))
    decision: Mapped[str] = mapped_column(String(16))
    model_name: Mapped[str] = mapped_column(String(128), default="")  # an enabled decision: its model
    model_version: Mapped[str] = mapped_column(String(64), default="")
    single_read_max_score: Mapped[int | None]  # a threshold change: the new threshold
    effective_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)
    what_if: Mapped[dict[str, object]] = mapped_column(JSON)
    proposed_by: Mapped[str] = mapped_column(String(128))
    proposed_at: Mapped[datetime]
    approved_by: Mapped[str | None] = mapped_column(String(128))
    approved_at: Mapped[datetime | None]
