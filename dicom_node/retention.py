"""Originals removed from storage a while after their study was REPORTED, when a site says so.

``retain_originals_days`` unset (the default) keeps every original for good. Set, the leading
listener removes the files of a study whose current version has been REPORTED for that long: the
PACS holds the images, and triage's results, rows and hashes stay. What is removed is audited per
study. A later version of such a study cannot be analysed on the removed images: it takes the
conservative path (its instances are "missing from storage"), visibly.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from triage.records import store
from triage.records.audit_actions import AuditAction
from triage.records.db import Database
from triage.records.tables import Instance, StateChange, Study, StudyState, StudyVersion

logger = logging.getLogger(__name__)


class Retention:
    """One pass removes at most ``batch`` originals past the retention."""

    def __init__(self, database: Database, storage_dir: Path, days: float | None, batch: int = 500) -> None:
        self._database = database
        self._storage_dir = storage_dir
        self._days = days
        self._batch = batch

    def run(self) -> int:
        """Remove what is due; returns how many originals were removed."""
        if self._days is None:
            return 0
        cutoff = self._database.now() - timedelta(days=self._days)
        reported = (
            select(StudyVersion.study_id)
            .join(Study, (Study.id == StudyVersion.study_id) & (Study.current_version == StudyVersion.number))
            .join(StateChange, StateChange.version_id == StudyVersion.id)
            .where(StudyVersion.state == StudyState.REPORTED, StateChange.state == StudyState.REPORTED)
            .where(StateChange.at <= cutoff)
        )
        with self._database.reading() as session:
            due = session.execute(
                select(Instance.id, Instance.storage_key, Instance.study_id)
                .where(Instance.removed_at.is_(None), Instance.study_id.in_(reported))
                .limit(self._batch)
            ).all()
        if not due:
            return 0
        for _, key, _ in due:
            (self._storage_dir / key).unlink(missing_ok=True)
        now = self._database.now()
        with self._database.session() as session:
            counts: dict[int, int] = {}
            for instance_id, _, study_id in due:
                session.get_one(Instance, instance_id).removed_at = now
                counts[study_id] = counts.get(study_id, 0) + 1
            for study_id, count in counts.items():
                detail = f"{count} originals, REPORTED over {self._days:g} days ago"
                store.audit(
                    session, actor=store.TRIAGE, action=AuditAction.STUDY_ORIGINALS_REMOVED,
                    source=store.TRIAGE, now=now, study_ids=[study_id], detail=detail,
                )  # fmt: skip
        logger.info("retention: removed %d originals of %d studies", len(due), len(counts))
        return len(due)
