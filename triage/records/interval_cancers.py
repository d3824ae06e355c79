"""Interval cancers (diagnosed between two screens) from a list a screening programme keeps, uploaded
by an admin: each matched to the woman's last screen before the diagnosis, within one screening
interval, and recorded as that screen's cancer outcome (the live evidence weighs it; a screen that
went to one reader becomes a discrepancy in the Recall queue). Matched by patient identifier, never
by name; a row that matches no screen is reported back with why. The import is audited.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.evidence_settings import EvidenceSettings
from triage.pipelines import Pipeline
from triage.records import live_evidence, readings, store
from triage.records.audit_actions import AuditAction
from triage.records.tables import FeedbackKind, Study, StudyVersion

# A screen is the last before a cancer only within one screening interval: two years in Denmark's
# programme (and most of Europe's); a cancer later than that is not this screen's interval cancer.
SCREENING_INTERVAL = timedelta(days=730)
COLUMNS = ("patient_id", "diagnosis_date")


@dataclass(frozen=True)
class ImportReport:
    matched: int
    unmatched: list[str]  # "line N: why", no patient data


def _screen_date(study: Study) -> date | None:
    try:
        return date(int(study.study_date[:4]), int(study.study_date[4:6]), int(study.study_date[6:8]))
    except ValueError:
        return study.created_at.date() if study.created_at else None


def _last_screen(session: Session, patient_id: str, diagnosed: date) -> Study | None:
    screens = session.scalars(
        select(Study)
        .join(
            StudyVersion, (StudyVersion.study_id == Study.id) & (StudyVersion.number == Study.current_version)
        )
        .where(Study.patient_id == patient_id, StudyVersion.pipeline == Pipeline.BREAST)
    ).all()
    before = [
        (screened, s)
        for s in screens
        if (screened := _screen_date(s)) is not None
        and diagnosed - SCREENING_INTERVAL <= screened < diagnosed
    ]
    return max(before, key=lambda pair: (pair[0], pair[1].id))[1] if before else None


def import_csv(
    session: Session, text: str, actor: str, settings: EvidenceSettings, now: datetime
) -> ImportReport:
    """Read ``patient_id,diagnosis_date`` rows (ISO dates, a header line) and record each match.

    Raises:
        ValueError: the text is not CSV, or its header is not ``patient_id,diagnosis_date``.
    """
    reader = csv.DictReader(io.StringIO(text, newline=""))  # the csv module's own line endings
    try:
        header, rows = tuple(reader.fieldnames or ()), list(reader)
    except csv.Error as error:  # e.g. a line break inside an unquoted field
        raise ValueError(f"the file cannot be read as CSV: {error}") from None
    if header != COLUMNS:
        raise ValueError(f"the file's header must be {','.join(COLUMNS)}")
    matched, unmatched = 0, []
    for line, row in enumerate(rows, start=2):
        try:
            diagnosed = date.fromisoformat((row["diagnosis_date"] or "").strip())
        except ValueError:
            unmatched.append(f"line {line}: the diagnosis date is not YYYY-MM-DD")
            continue
        patient_id = (row["patient_id"] or "").strip()
        screen = _last_screen(session, patient_id, diagnosed) if patient_id else None
        if screen is None:
            unmatched.append(f"line {line}: no screen of this patient in the two years before the diagnosis")
            continue
        readings.add_feedback(
            session, study_id=screen.id, kind=FeedbackKind.CANCER, value=True, boxes=[], author=actor,
            comment=f"interval cancer diagnosed {diagnosed.isoformat()} (imported list)", now=now,
        )  # fmt: skip
        store.audit(
            session, actor=actor, action=AuditAction.OUTCOME_RECEIVED, source="interval-cancers", now=now,
            study_ids=[screen.id], detail=f"interval cancer diagnosed {diagnosed.isoformat()}",
        )  # fmt: skip
        matched += 1
    session.flush()
    live_evidence.check(session, settings, now)
    return ImportReport(matched, unmatched)
