"""Reads of the system of record that several processes share (writes are in ``store.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session, aliased

from triage.records.leadership import leader_state
from triage.records.tables import (
    PROCESS_STATUS_PREFIX,
    Delivery,
    DeliveryState,
    Instance,
    OutboxMessage,
    PeerStatus,
    StateChange,
    StudyState,
    StudyVersion,
)


def find_instance(session: Session, sop_instance_uid: str, study_id: int | None = None) -> Instance | None:
    """A stored instance by its SOP Instance UID (and, when given, in that study only)."""
    query = select(Instance).where(Instance.sop_instance_uid == sop_instance_uid)
    if study_id is not None:
        query = query.where(Instance.study_id == study_id)
    return session.scalar(query)


def versions_in(session: Session, *states: StudyState) -> list[StudyVersion]:
    return list(
        session.scalars(select(StudyVersion).where(StudyVersion.state.in_(states)).order_by(StudyVersion.id))
    )


def instances_of(session: Session, version: StudyVersion) -> list[Instance]:
    """Every instance a version comprises: those received in it and in every earlier version."""
    return list(
        session.scalars(
            select(Instance)
            .where(Instance.study_id == version.study_id, Instance.version_number <= version.number)
            .order_by(Instance.id)
        )
    )


def removed_originals(session: Session, version: StudyVersion) -> int:
    """How many of a version's instances retention has removed from storage."""
    return (
        session.scalar(
            select(func.count())
            .where(Instance.study_id == version.study_id, Instance.version_number <= version.number)
            .where(Instance.removed_at.is_not(None))
        )
        or 0
    )


def queued_since_before(session: Session, cutoff: datetime) -> list[StudyVersion]:
    """Versions in QUEUED whose latest move into QUEUED was before ``cutoff``."""
    latest = (
        select(StateChange.version_id, func.max(StateChange.at).label("at"))
        .where(StateChange.state == StudyState.QUEUED)
        .group_by(StateChange.version_id)
        .subquery()
    )
    query = (
        select(StudyVersion)
        .join(latest, latest.c.version_id == StudyVersion.id)
        .where(StudyVersion.state == StudyState.QUEUED, latest.c.at < cutoff)
        .order_by(StudyVersion.id)
    )
    return list(session.scalars(query))


def pending_task_payloads(session: Session, task_name: str) -> list[dict[str, Any]]:
    """Payloads of outbox messages of one task not yet published."""
    return list(
        session.scalars(
            select(OutboxMessage.payload).where(
                OutboxMessage.task_name == task_name, OutboxMessage.published_at.is_(None)
            )
        )
    )


def recorded_payload(session: Session, message_id: int, task_name: str) -> dict[str, Any] | None:
    """The payload the outbox holds for message ``message_id`` of ``task_name``, if there is one."""
    payload = session.scalar(
        select(OutboxMessage.payload).where(
            OutboxMessage.id == message_id, OutboxMessage.task_name == task_name
        )
    )
    return None if payload is None else dict(payload)


def due_messages(session: Session, now: datetime, limit: int) -> list[tuple[int, str, dict[str, Any]]]:
    """Outbox messages due for publishing, oldest first: (id, task name, payload)."""
    rows = session.execute(
        select(OutboxMessage.id, OutboxMessage.task_name, OutboxMessage.payload)
        .where(OutboxMessage.published_at.is_(None), OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.id)
        .limit(limit)
    ).all()
    return [(int(row.id), str(row.task_name), dict(row.payload)) for row in rows]


def count_by_state(session: Session) -> dict[str, int]:
    rows = session.execute(select(StudyVersion.state, func.count()).group_by(StudyVersion.state)).all()
    return {str(state): int(count) for state, count in rows}


def has_deliveries(session: Session, version_id: int) -> bool:
    return session.scalar(select(func.count()).where(Delivery.version_id == version_id)) != 0


def due_deliveries(session: Session, now: datetime, limit: int) -> list[Delivery]:
    """Deliveries due for a try, oldest first; an SR only once the other objects of its version are
    delivered, so that the SR, which acts, reaches the PACS last."""
    waiting = aliased(Delivery)
    unsent_sibling = exists().where(
        waiting.version_id == Delivery.version_id,
        waiting.kind != "sr",
        waiting.state != DeliveryState.DELIVERED,
    )
    return list(
        session.scalars(
            select(Delivery)
            .where(Delivery.state == DeliveryState.PENDING, Delivery.next_attempt_at <= now)
            .where(~((Delivery.kind == "sr") & unsent_sibling))
            .order_by(Delivery.id)
            .limit(limit)
        )
    )


def degraded(session: Session, now: datetime) -> list[str]:
    """Why triage runs degraded, a sentence each ([]: it does not): no listener leads (its lease
    lapsed), or triage serve has a child that keeps stopping."""
    found = []
    leader = leader_state(session, now)
    if leader is not None and leader.without_leader_seconds > 0:
        found.append(
            f"no listener has led for {leader.without_leader_seconds:.0f} s: studies do not complete, "
            "expire or reach the PACS until one does"
        )
    found += session.scalars(
        select(PeerStatus.detail)
        .where(PeerStatus.name.startswith(PROCESS_STATUS_PREFIX), PeerStatus.reachable.is_(False))
        .order_by(PeerStatus.name)
    )
    return found


def peer_status(session: Session, name: str) -> PeerStatus | None:
    """What the delivering process last found of a destination, if it ever looked."""
    return session.get(PeerStatus, name)


def times_in(session: Session, version_id: int, state: StudyState) -> int:
    """How many times a version entered ``state`` (for ANALYSING: how many times a worker claimed it)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(StateChange)
            .where(StateChange.version_id == version_id, StateChange.state == state)
        )
        or 0
    )
