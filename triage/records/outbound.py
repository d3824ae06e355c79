"""What triage sends out, for operators: the DICOM objects for the PACS and the HL7 messages for the
RIS, listed by state, and a failed one sent again (audited).

A failed result object (SR or summary image) is not sent again: its failure sent the study to the
conservative path and withdrew its verdict, so sending it now would make a withdrawn verdict act at
the PACS. The study is analysed again when the PACS sends it again. Withdrawal objects (the
superseding SR, the rejection note) and HL7 messages are sent again with a fresh deadline.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.records.audit_actions import AuditAction
from triage.records.store import audit
from triage.records.tables import Delivery, DeliveryState, Hl7Message, StudyVersion
from triage.records.withdrawals import WITHDRAWAL_KINDS


class Destination(enum.StrEnum):
    PACS = "pacs"  # DICOM objects (deliveries)
    RIS = "ris"  # HL7 messages


@dataclass(frozen=True)
class Outbound:
    destination: Destination
    id: int
    study_id: int
    version: int
    kind: str  # sc, sr, withdrawal-sr, kos; oru
    identifier: str  # the SOP Instance UID, or the HL7 message control ID
    state: DeliveryState
    attempts: int
    last_error: str
    created_at: datetime
    delivered_at: datetime | None


class NotResendable(ValueError):
    """A re-send refused, with why in words."""


def list_outbound(session: Session, state: DeliveryState | None = None, limit: int = 200) -> list[Outbound]:
    """The newest objects and messages first, of one state or all, at most ``limit`` of each kind."""
    deliveries = select(Delivery, StudyVersion).join(StudyVersion, StudyVersion.id == Delivery.version_id)
    messages = select(Hl7Message, StudyVersion).join(StudyVersion, StudyVersion.id == Hl7Message.version_id)
    if state is not None:
        deliveries = deliveries.where(Delivery.state == state)
        messages = messages.where(Hl7Message.state == state)
    found = [
        _of_delivery(d, v) for d, v in session.execute(deliveries.order_by(Delivery.id.desc()).limit(limit))
    ]
    found += [
        _of_message(m, v) for m, v in session.execute(messages.order_by(Hl7Message.id.desc()).limit(limit))
    ]
    return sorted(found, key=lambda o: o.created_at, reverse=True)[:limit]


def resend(
    session: Session,
    destination: Destination,
    outbound_id: int,
    reason: str,
    actor: str,
    source: str,
    now: datetime,
) -> Outbound:
    """Queue a FAILED object or message again, its tries and deadline counted afresh; audited."""
    row: Delivery | Hl7Message | None = (
        session.get(Delivery, outbound_id)
        if destination == Destination.PACS
        else session.get(Hl7Message, outbound_id)
    )
    if row is None:
        raise LookupError(f"no {destination} item {outbound_id}")
    if row.state != DeliveryState.FAILED:
        raise NotResendable(f"it is {row.state}, not FAILED: it is still being sent, or was delivered")
    if isinstance(row, Delivery) and row.kind not in WITHDRAWAL_KINDS:
        raise NotResendable(
            "its failure sent the study to the conservative path and withdrew its verdict; sending it now "
            "would make a withdrawn verdict act. Send the study from the PACS again for a new analysis"
        )
    if isinstance(row, Hl7Message) and not row.message:
        raise NotResendable(f"it was never built ({row.last_error}); there is nothing to send")
    row.state, row.attempts, row.next_attempt_at, row.created_at = DeliveryState.PENDING, 0, now, now
    previous_error, row.last_error = row.last_error, ""
    version = session.get_one(StudyVersion, row.version_id)
    identifier = row.sop_instance_uid if isinstance(row, Delivery) else row.control_id
    audit(
        session, actor=actor, action=AuditAction.DELIVERY_RESENT, source=source, now=now,
        study_ids=[version.study_id],
        detail=f"{destination} {identifier} queued again: {reason} (it had failed: {previous_error[:200]})",
    )  # fmt: skip
    return _of_delivery(row, version) if isinstance(row, Delivery) else _of_message(row, version)


def _of_delivery(delivery: Delivery, version: StudyVersion) -> Outbound:
    return Outbound(
        Destination.PACS,
        delivery.id,
        version.study_id,
        version.number,
        delivery.kind,
        delivery.sop_instance_uid,
        DeliveryState(delivery.state),
        delivery.attempts,
        delivery.last_error,
        delivery.created_at,
        delivery.delivered_at,
    )


def _of_message(message: Hl7Message, version: StudyVersion) -> Outbound:
    return Outbound(
        Destination.RIS,
        message.id,
        version.study_id,
        version.number,
        "oru",
        message.control_id,
        DeliveryState(message.state),
        message.attempts,
        message.last_error,
        message.created_at,
        message.delivered_at,
    )
