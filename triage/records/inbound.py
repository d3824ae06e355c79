"""Outcomes from the hospital's systems, over HL7: each message kept whole, matched to its study by
Study Instance UID or accession number (never by name), and read as outcomes beside the
radiologists' readings, which the live evidence weighs at once. A message that matches no study, or
says nothing triage reads, is kept UNMATCHED for an admin; one that cannot be read is kept REJECTED
with why. A message re-sent with the same control ID is recognised and not counted twice."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.evidence_settings import EvidenceSettings
from triage.records import live_evidence, readings, store
from triage.records.audit_actions import AuditAction
from triage.records.status_tables import InboundMessage
from triage.records.tables import FeedbackKind, Study


class InboundState(enum.StrEnum):
    MATCHED = "MATCHED"
    UNMATCHED = "UNMATCHED"
    REJECTED = "REJECTED"


@dataclass(frozen=True)
class Observation:
    """One outcome a message states: a fracture or not, a recall or not, a cancer or not."""

    kind: FeedbackKind
    value: bool
    said: str  # what in the message says it, e.g. "ICD-10 S52.5"


@dataclass(frozen=True)
class InboundOutcome:
    """What triage read of one message; ``problem`` says why it cannot be read at all."""

    sending_application: str
    control_id: str
    message_type: str
    accession_number: str = ""
    study_instance_uid: str = ""
    patient_id: str = ""
    observations: tuple[Observation, ...] = ()
    problem: str = ""
    ignored: tuple[str, ...] = field(default_factory=tuple)  # observations triage does not read, why


@dataclass(frozen=True)
class Receipt:
    state: InboundState
    detail: str


def _study(session: Session, message: InboundOutcome) -> tuple[Study | None, str]:
    if message.study_instance_uid:
        found = session.scalar(select(Study).where(Study.study_instance_uid == message.study_instance_uid))
        if found is not None:
            return found, ""
    if message.accession_number:
        studies = session.scalars(
            select(Study).where(Study.accession_number == message.accession_number).limit(2)
        ).all()
        if len(studies) == 1:
            return studies[0], ""
        if studies:
            return None, "the accession number names more than one study"
    if not message.study_instance_uid and not message.accession_number:
        return None, "the message names no Study Instance UID and no accession number"
    return None, "no study with this Study Instance UID or accession number"


def receive(
    session: Session, message: InboundOutcome, raw: str, settings: EvidenceSettings, now: datetime
) -> Receipt:
    """Keep the message and read its outcomes into the study it names; the receipt says how it went."""
    control_id = message.control_id or None
    if control_id is not None:
        earlier = session.scalar(
            select(InboundMessage).where(
                InboundMessage.sending_application == message.sending_application,
                InboundMessage.control_id == control_id,
            )
        )
        if earlier is not None:
            return Receipt(InboundState(earlier.state), f"already received: {earlier.detail}")
    row = InboundMessage(
        sending_application=message.sending_application[:64], control_id=control_id,
        message_type=message.message_type[:32], accession_number=message.accession_number[:64],
        study_instance_uid=message.study_instance_uid[:64], outcomes=[], raw=raw, received_at=now,
        state=InboundState.UNMATCHED, detail="",  # until read below
    )  # fmt: skip
    session.add(row)
    state, detail = _read_into_study(session, message, row, settings, now)
    row.state, row.detail = state, detail
    return Receipt(state, detail)


def _read_into_study(
    session: Session, message: InboundOutcome, row: InboundMessage, settings: EvidenceSettings, now: datetime
) -> tuple[InboundState, str]:
    if message.problem:
        return InboundState.REJECTED, message.problem
    study, why = _study(session, message)
    if study is None:
        return InboundState.UNMATCHED, why
    row.study_id = study.id
    if message.patient_id and study.patient_id and message.patient_id != study.patient_id:
        return InboundState.UNMATCHED, "the patient identifier differs from the study's: not read"
    if not message.observations:
        ignored = "; ".join(message.ignored) or "no OBX segment"
        return InboundState.UNMATCHED, f"no outcome triage reads ({ignored})"[:2000]
    stored, refused = [], []
    author = f"hl7:{message.sending_application}"[:128]
    for observation in message.observations:
        try:
            readings.add_feedback(
                session, study_id=study.id, kind=observation.kind, value=observation.value, boxes=[],
                comment=observation.said[:2000], author=author, now=now,
            )  # fmt: skip
        except readings.FeedbackRejected as error:
            refused.append(f"{observation.said}: {error}")
            continue
        stored.append(f"{observation.kind}={'yes' if observation.value else 'no'}")
    if not stored:
        return InboundState.UNMATCHED, "; ".join(refused)[:2000]
    row.outcomes = stored
    store.audit(
        session, actor=author, action=AuditAction.OUTCOME_RECEIVED, source="hl7", now=now,
        study_ids=[study.id], detail=", ".join(stored),
    )  # fmt: skip
    session.flush()
    live_evidence.check(session, settings, now)
    return InboundState.MATCHED, ", ".join(stored) + (f"; not read: {'; '.join(refused)}" if refused else "")


def listed(session: Session, state: InboundState | None, limit: int) -> list[InboundMessage]:
    """The messages kept, newest first, of one state or all."""
    query = select(InboundMessage).order_by(InboundMessage.id.desc()).limit(limit)
    if state is not None:
        query = query.where(InboundMessage.state == state)
    return list(session.scalars(query))
