"""Studies in the database as the listener and workers leave them, for the API and page tests.

Instances are written to storage and recorded with the real store functions; versions are moved
through the real transitions; results carry outcomes shaped as the pipelines write them.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from pydicom import Dataset
from sqlalchemy import select

from dicom_node.handlers import describe
from testkit import phantoms, synthetic
from triage.outcomes import BreastOutcome, FractureOutcome, ModelIdentity
from triage.records import results, store
from triage.records.db import Database
from triage.records.results import ResultObject
from triage.records.storage import sha256_of
from triage.records.tables import Delivery, DeliveryState, StudyState, StudyVersion
from triage.settings import Settings

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
PATH = (StudyState.COMPLETE, StudyState.QUEUED, StudyState.ANALYSING)


def fracture_outcome(state: str, probability: float, marks: dict[str, list[Any]]) -> FractureOutcome:
    """An outcome as FracturePipeline writes it; ``marks`` maps SOP Instance UIDs to boxes."""
    return FractureOutcome.model_validate(
        {
            "state": state,
            "probability": probability,
            "thresholds": {"fracture": 0.6, "doubt": 0.2},
            "images": [
                {"sop_instance_uid": uid, "boxes": [{"corners": c, "score": s} for c, s in boxes]}
                for uid, boxes in marks.items()
            ],
        }
    )


def breast_outcome(score: int, single_read_max_score: int = 5) -> BreastOutcome:
    return BreastOutcome(
        score=score,
        route="SINGLE_READ" if score <= single_read_max_score else "DOUBLE_READ",
        high_risk=score == 10,
        probability=score / 10,
        single_read_max_score=single_read_max_score,
        decile_cut_points=tuple(0.1 * i for i in range(1, 10)),
        per_breast={"L": score / 10, "R": 0.05},
    )


def add_study(
    database: Database,
    settings: Settings,
    datasets: list[Dataset],
    *,
    pipeline: str,
    state: StudyState,
    reason: str = "",
    outcome: FractureOutcome | BreastOutcome | None = None,
    deliveries: tuple[DeliveryState, ...] = (),
    at: datetime = T0,
    routed: bool = True,
) -> int:
    """Store ``datasets`` as one study, move it to ``state``, add its result; return the study id.
    ``routed``: the instances count as routed to the pipeline (the monitor marks them so)."""
    with database.session() as session:
        for ds in datasets:
            received = describe(ds, sha256="0" * 64, size_bytes=1, calling="TESTSCU", peer="127.0.0.1:1")
            path = settings.storage_dir / received.storage_key
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
            received = dataclasses.replace(received, sha256=sha256_of(path), size_bytes=path.stat().st_size)
            version = store.add_instance(session, received, at)
        version_id, study_id = version.id, version.study_id
        if routed:
            store.mark_routed(session, study_id, [ds.SOPInstanceUID for ds in datasets])
    with database.session() as session:
        row = session.get_one(StudyVersion, version_id)
        row.pipeline = pipeline
        previous = StudyState.RECEIVING
        steps = () if state == StudyState.IGNORED else PATH
        if state in (StudyState.REPORTED,):
            steps = (*PATH, StudyState.ANALYSED)
        for offset, step in enumerate((*steps, state)):
            moment = at + timedelta(seconds=offset + 1)
            values = {"completed_at": moment} if step == StudyState.COMPLETE else {}
            assert store.transition(session, version_id, previous, step, moment, reason, **values)
            previous = step
        if outcome is not None:
            model = ModelIdentity(f"triage-{pipeline}-phantom", "0.1.0", "f" * 64)
            results.add_result(
                session, version_id, outcome, model,
                summary=reason or "analysed", software_version="0.1.0", now=at, device="cpu",
            )  # fmt: skip
        for index in range(len(deliveries)):
            results.add_delivery(
                session, version_id, ResultObject("sr", f"2.25.{version_id}{index}", "x.dcm"), at
            )
        session.flush()
        added = session.scalars(
            select(Delivery).where(Delivery.version_id == version_id).order_by(Delivery.id)
        )
        for delivery, delivery_state in zip(added, deliveries, strict=True):
            delivery.state = delivery_state
    return study_id


def patient(n: int) -> synthetic.Patient:
    return synthetic.Patient(
        patient_id=f"SYN{n:04d}",
        name=f"Phantom^Patient{n}",
        birth_date="19600101",
        accession_number=f"ACC{n:04d}",
    )


def trauma(n: int, fractured: bool) -> list[Dataset]:
    """A phantom trauma radiograph of patient ``n`` (256 x 256, a visible break when fractured)."""
    rng = np.random.default_rng(n)
    ds = synthetic.dx(synthetic.StudyIds(), patient=patient(n))
    return [phantoms.to_dicom(ds, phantoms.radiograph(256, fractured, rng)[0])]


def screen(n: int) -> list[Dataset]:
    views = synthetic.screen(patient=patient(n))
    return views


def worklist_of_every_kind(database: Database, settings: Settings) -> dict[str, int]:
    """One study per verdict the worklist distinguishes; returns their study ids by name."""
    ids: dict[str, int] = {}
    minute = timedelta(minutes=1)
    no_fracture = trauma(1, fractured=False)
    ids["no_fracture"] = add_study(
        database,
        settings,
        no_fracture,
        pipeline="fracture",
        state=StudyState.REPORTED,
        outcome=fracture_outcome("NO_FRACTURE", 0.05, {str(no_fracture[0].SOPInstanceUID): []}),
        deliveries=(DeliveryState.DELIVERED,),
        at=T0,
    )
    doubt = trauma(2, fractured=True)
    ids["doubt"] = add_study(
        database,
        settings,
        doubt,
        pipeline="fracture",
        state=StudyState.REPORTED,
        outcome=fracture_outcome(
            "DOUBT", 0.4, {str(doubt[0].SOPInstanceUID): [([60.0, 60.0, 120.0, 120.0], 0.4)]}
        ),
        deliveries=(DeliveryState.DELIVERED,),
        at=T0 + minute,
    )
    fracture = trauma(3, fractured=True)
    ids["fracture"] = add_study(
        database,
        settings,
        fracture,
        pipeline="fracture",
        state=StudyState.REPORTED,
        outcome=fracture_outcome(
            "FRACTURE", 0.9, {str(fracture[0].SOPInstanceUID): [([100.0, 80.0, 180.0, 160.0], 0.9)]}
        ),
        deliveries=(DeliveryState.DELIVERED,),
        at=T0 + 2 * minute,
    )
    failed = trauma(4, fractured=False)
    ids["delivery_failed"] = add_study(
        database,
        settings,
        failed,
        pipeline="fracture",
        state=StudyState.NOT_ANALYSED,
        reason="results could not be delivered to the PACS after 10 attempts (refused)",
        outcome=fracture_outcome("NO_FRACTURE", 0.05, {str(failed[0].SOPInstanceUID): []}),
        deliveries=(DeliveryState.FAILED,),
        at=T0 + 3 * minute,
    )
    ids["single"] = add_study(
        database,
        settings,
        screen(5),
        pipeline="breast",
        state=StudyState.REPORTED,
        outcome=breast_outcome(3),
        deliveries=(DeliveryState.DELIVERED,),
        at=T0 + 4 * minute,
    )
    ids["high_risk"] = add_study(
        database,
        settings,
        screen(6),
        pipeline="breast",
        state=StudyState.ANALYSED,
        outcome=breast_outcome(10),
        deliveries=(DeliveryState.PENDING,),
        at=T0 + 5 * minute,
    )
    ids["screen_not_analysed"] = add_study(
        database,
        settings,
        screen(7)[:3],
        pipeline="breast",
        state=StudyState.NOT_ANALYSED,
        reason="incomplete screen: R-MLO missing; double reading",
        at=T0 + 6 * minute,
    )
    ids["ignored"] = add_study(
        database,
        settings,
        [synthetic.dx(patient=patient(8), body_part="CHEST")],
        pipeline="",
        state=StudyState.IGNORED,
        reason="no routing rule matches (CHEST)",
        at=T0 + 7 * minute,
    )
    return ids
