"""Results, shadow results and the objects queued for delivery: written when a study is analysed.

The study's state moves in ``store.py``; these rows record what came of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from triage.header_facts import HeaderFacts
from triage.outcomes import BreastOutcome, FractureOutcome, ModelIdentity
from triage.records import store, verdicts
from triage.records.audit_actions import AuditAction
from triage.records.tables import (
    Delivery,
    DeliveryState,
    Instance,
    PeerStatus,
    Result,
    ShadowResult,
    StudyVersion,
)


def scanner(session: Session, version_id: int) -> str:
    """The scanner of a study version: manufacturer and model of its first image routed to a
    pipeline (of any image, when none was routed); "" when the headers name none."""
    study_id, number = session.execute(
        select(StudyVersion.study_id, StudyVersion.number).where(StudyVersion.id == version_id)
    ).one()
    found = session.execute(
        select(Instance.attributes)
        .where(Instance.study_id == study_id, Instance.version_number <= number)
        .order_by(Instance.routed.desc(), Instance.id)
        .limit(1)
    ).scalar()
    return HeaderFacts.from_json(found).scanner if found else ""


def add_result(
    session: Session,
    version_id: int,
    outcome: FractureOutcome | BreastOutcome,
    model: ModelIdentity | None,
    *,
    summary: str,
    software_version: str,
    now: datetime,
    device: str = "",
    inputs: list[dict[str, str]] | None = None,
    timings_ms: dict[str, float] | None = None,
) -> None:
    """Record a pipeline's result for a study version (one per version)."""
    session.add(
        Result(
            version_id=version_id,
            pipeline=outcome.pipeline,
            analysed=outcome.analysed,
            summary=summary,
            model_name=model.name if model else "",
            model_version=model.version if model else "",
            weights_sha256=model.weights_sha256 if model else "",
            software_version=software_version,
            device=device,
            outcome=outcome,
            score=outcome.score if isinstance(outcome, BreastOutcome) else None,
            probability=outcome.probability,
            scanner=scanner(session, version_id),
            inputs={"instances": inputs or []},
            timings_ms=timings_ms or {},
            created_at=now,
        )
    )
    verdicts.settle(session, version_id)
    if outcome.not_enabled or outcome.overridden:  # the evidence gate, in the study's own audit
        said = [f"{d.label} not enabled: {why}" for d, why in sorted(outcome.not_enabled.items())]
        said += [f"{d.label} {why}" for d, why in sorted(outcome.overridden.items())]
        study_id = session.scalar(select(StudyVersion.study_id).where(StudyVersion.id == version_id))
        store.audit(
            session, actor="triage", action=AuditAction.DECISION_NOT_ENABLED, source="worker", now=now,
            study_ids=[study_id], detail="; ".join(said)[:2000],
        )  # fmt: skip


def add_shadow_result(
    session: Session,
    version_id: int,
    outcome: FractureOutcome | BreastOutcome,
    model: ModelIdentity,
    summary: str,
    now: datetime,
) -> None:
    """Record a candidate model's result in shadow mode (once per version and model)."""
    exists = session.scalar(
        select(func.count()).where(
            ShadowResult.version_id == version_id,
            ShadowResult.model_name == model.name,
            ShadowResult.model_version == model.version,
        )
    )
    if not exists:
        session.add(
            ShadowResult(
                version_id=version_id,
                pipeline=outcome.pipeline,
                analysed=outcome.analysed,
                summary=summary,
                model_name=model.name,
                model_version=model.version,
                weights_sha256=model.weights_sha256,
                outcome=outcome,
                created_at=now,
            )
        )


@dataclass(frozen=True)
class ResultObject:
    """One object made durable under the results folder, for delivery: its storage key, and the same
    content in another SOP class for a PACS that takes only that (``alternate_key``)."""

    kind: str  # sc (summary image) or sr; delivered in that order, so the SR, which acts, goes last
    sop_instance_uid: str
    storage_key: str
    alternate_key: str = ""


def add_delivery(
    session: Session, version_id: int, result_object: ResultObject, now: datetime, failed: str = ""
) -> None:
    """Queue one object for the PACS; ``failed`` records one that could not even be built."""
    kind = result_object.kind
    session.add(
        Delivery(
            version_id=version_id,
            kind=kind,
            sop_instance_uid=result_object.sop_instance_uid or f"unbuilt-{version_id}-{kind}",
            storage_key=result_object.storage_key,
            alternate_storage_key=result_object.alternate_key,
            state=DeliveryState.FAILED if failed else DeliveryState.PENDING,
            last_error=failed,
            next_attempt_at=now,
            created_at=now,
        )
    )
    verdicts.settle(session, version_id)


def record_peer_status(session: Session, name: str, reachable: bool, detail: str, now: datetime) -> None:
    """What the delivering process last found of a destination (the web app reads it, no DICOM there)."""
    row = session.get(PeerStatus, name)
    if row is None:
        session.add(PeerStatus(name=name, reachable=reachable, detail=detail, checked_at=now))
    else:
        row.reachable, row.detail, row.checked_at = reachable, detail, now
