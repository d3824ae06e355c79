"""Radiologists' readings exported as training labels, with no patient identity in them.

Patient, study and image identifiers are replaced by keyed hashes (HMAC-SHA-256 under a key that
never leaves this installation), so labels of one patient stay together for patient-level splits
and the same image keeps the same key across exports, while nobody holding the export can get
back to a name, an ID or a UID. Names, birth dates, accession numbers, dates and free text are
left out (the comment is free text and may name someone). The link to the result a label judges
is the label's own opaque id.
"""

from __future__ import annotations

import csv
import hmac
import io
import json
import os
import secrets
from hashlib import sha256
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from worklist.db import Feedback, Instance, Result, Study, StudyVersion

DEIDENTIFICATION = "triage labels export: identifiers replaced by keyed hashes, no names, dates or free text"


class LabelBox(BaseModel):
    image_key: str
    laterality: str
    view: str
    corners: list[float]


class Label(BaseModel):
    label_id: str
    patient_key: str
    exam_key: str
    pipeline: str
    kind: str
    value: bool
    boxes: list[LabelBox]
    model_name: str
    model_version: str
    ai_verdict: str
    ai_probability: float | None
    patient_identity_removed: str = "YES"
    deidentification_method: str = DEIDENTIFICATION


def label_key(home: Path) -> bytes:
    """This installation's hashing key, made on first use and readable by the service user only."""
    path = home / "label-key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return path.read_bytes()
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(32))
    return path.read_bytes()


def _opaque(key: bytes, kind: str, value: str) -> str:
    return hmac.new(key, f"{kind}:{value}".encode(), sha256).hexdigest()[:32]


def export(session: Session, key: bytes) -> list[Label]:
    """Every reading as a label, oldest first."""
    rows = session.execute(
        select(Feedback, Study, Result, StudyVersion.pipeline)
        .join(Study, Study.id == Feedback.study_id)
        .join(StudyVersion, StudyVersion.id == Feedback.version_id)
        .outerjoin(Result, Result.id == Feedback.result_id)
        .order_by(Feedback.id)
    ).all()
    labels = []
    for feedback, study, result, pipeline in rows:
        facts = {
            i.sop_instance_uid: i.attributes
            for i in session.scalars(select(Instance).where(Instance.study_id == study.id))
        }
        outcome: dict[str, Any] = result.outcome if result is not None and result.analysed else {}
        verdict = outcome.get("state") or outcome.get("route") or "NOT ANALYSED"
        if outcome.get("score") is not None:
            verdict = f"score {outcome['score']} {verdict}"
        labels.append(
            Label(
                label_id=feedback.label_id,
                patient_key=_opaque(key, "patient", f"{study.issuer_of_patient_id}/{study.patient_id}"),
                exam_key=_opaque(key, "study", study.study_instance_uid),
                pipeline=pipeline,
                kind=feedback.kind,
                value=feedback.value,
                boxes=[
                    LabelBox(
                        image_key=_opaque(key, "image", box["sop_instance_uid"]),
                        laterality=str(facts.get(box["sop_instance_uid"], {}).get("laterality", "")),
                        view=str(facts.get(box["sop_instance_uid"], {}).get("view", "")),
                        corners=box["corners"],
                    )
                    for box in feedback.boxes
                ],
                model_name=result.model_name if result is not None else "",
                model_version=result.model_version if result is not None else "",
                ai_verdict=verdict,
                ai_probability=outcome.get("probability"),
            )
        )
    return labels


def to_csv(labels: list[Label]) -> str:
    """One row per label; boxes as a JSON list in one column."""
    out = io.StringIO()
    fields = list(Label.model_fields)
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for label in labels:
        row = label.model_dump()
        row["boxes"] = json.dumps(row["boxes"])
        writer.writerow(row)
    return out.getvalue()
