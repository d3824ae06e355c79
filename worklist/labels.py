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
from hashlib import sha256
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.deidentification import deidentify
from triage.header_facts import HeaderFacts
from triage.home import secret_file
from triage.outcomes import BreastOutcome, Verdict
from triage.records.tables import Feedback, Instance, Result, Study, StudyVersion
from triage.stored import StorageUnavailable, StoredUnreadable, open_stored

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


KEY_BYTES = 32


class WeakLabelKey(ValueError):
    """The label key on disk is too short to keep identities out of reach."""


def label_key(home: Path) -> bytes:
    """This installation's hashing key, made whole on first use, readable by the service user only.
    A key shorter than 32 bytes is refused: hashes under it could be reversed by trying every
    patient ID."""
    key = secret_file(home, "label-key", KEY_BYTES)
    if len(key) < KEY_BYTES:
        raise WeakLabelKey(
            f"{home / 'label-key'} holds {len(key)} bytes; a label key needs {KEY_BYTES} or more. If no "
            "export was made with it, remove it and a new one is made; otherwise restore it from backup"
        )
    return key


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
            i.sop_instance_uid: HeaderFacts.from_json(i.attributes)
            for i in session.scalars(select(Instance).where(Instance.study_id == study.id))
        }
        outcome = result.outcome if result is not None else None
        verdict = outcome.verdict if outcome is not None else Verdict.NOT_ANALYSED
        ai_verdict = (
            f"score {outcome.score} {verdict}"
            if isinstance(outcome, BreastOutcome) and outcome.analysed
            else str(verdict)
        )
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
                        laterality=facts.get(box["sop_instance_uid"], HeaderFacts()).laterality,
                        view=facts.get(box["sop_instance_uid"], HeaderFacts()).view,
                        corners=box["corners"],
                    )
                    for box in feedback.boxes
                ],
                model_name=result.model_name if result is not None else "",
                model_version=result.model_version if result is not None else "",
                ai_verdict=ai_verdict,
                ai_probability=outcome.probability if outcome is not None and outcome.analysed else None,
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


def export_folder(
    session: Session, key: bytes, storage_dir: Path, out: Path, allow_unflagged: bool = False
) -> tuple[int, list[str]]:
    """Write every reading with its study's images, de-identified (``triage.deidentification``),
    into ``out``: ``images/`` and ``labels.json`` (read by training's ``worklist_feedback``
    adapter). Returns the number of labels written and the images left out, with why; an image
    without BurnedInAnnotation NO is left out unless ``allow_unflagged``."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows, left_out = [], []
    study_of = dict(session.execute(select(Feedback.label_id, Feedback.study_id)).tuples().all())
    for label in export(session, key):
        images = []
        for instance in session.scalars(
            select(Instance).where(Instance.study_id == study_of[label.label_id]).order_by(Instance.id)
        ):
            image_key = _opaque(key, "image", instance.sop_instance_uid)
            target = out / "images" / f"{image_key}.dcm"
            try:
                if not target.exists():
                    ds = open_stored(storage_dir, instance.storage_key, instance.sha256, storage_dir.parent)
                    clean = deidentify(ds, key, label.patient_key, allow_unflagged)
                    clean.save_as(target, enforce_file_format=True)
            except (StoredUnreadable, StorageUnavailable) as error:
                left_out.append(f"{image_key}: {error}")
                continue
            except (ValueError, OSError) as error:
                left_out.append(f"{image_key}: {error}")
                continue
            images.append(
                {
                    "image_key": image_key,
                    "file": f"images/{image_key}.dcm",
                    "laterality": HeaderFacts.from_json(instance.attributes).laterality,
                    "view": HeaderFacts.from_json(instance.attributes).view,
                }
            )
        if images:
            rows.append({**label.model_dump(), "images": images})
    (out / "labels.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return len(rows), left_out
