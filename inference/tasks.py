"""Thin task bodies: validate the payload, claim the study version, run its pipeline, record.

A task claims its study version (QUEUED -> ANALYSING) before any work, so a duplicate message, a
re-delivery or a re-queue after a restart never analyses a version twice. Anything that fails
ends in NOT_ANALYSED with the reason: the conservative path, visibly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from dicom_node.dispatch import AnalyseStudy
from worklist import store
from worklist.db import Database, StudyState, utcnow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Analysed:
    """A pipeline's result for one study version."""

    summary: str
    model_version: str


@dataclass(frozen=True)
class Skipped:
    """The pipeline could not analyse the study; it takes the conservative path for ``reason``."""

    reason: str


Pipeline = Callable[[AnalyseStudy], Analysed | Skipped]


def no_model(payload: AnalyseStudy) -> Skipped:
    """The pipeline used when no model is installed for a study's pipeline."""
    return Skipped(f"no model is installed for the {payload.pipeline} pipeline")


class AnalyseStudyTask:
    """The body of ``triage.analyse_study``, callable without a broker."""

    def __init__(self, database: Database, pipelines: dict[str, Pipeline]) -> None:
        self._database = database
        self._pipelines = pipelines

    def __call__(self, raw_payload: dict[str, object]) -> str:
        payload = AnalyseStudy.model_validate(raw_payload)
        now = utcnow()
        with self._database.session() as session:
            claimed = store.transition(
                session,
                payload.study_version_id,
                StudyState.QUEUED,
                StudyState.ANALYSING,
                now,
                "claimed by a worker",
                claimed_at=now,
            )
        if not claimed:
            logger.info("study version %d is not queued (any more); nothing to do", payload.study_version_id)
            return "not-queued"
        outcome = self._pipelines.get(payload.pipeline, no_model)(payload)
        return self.record(payload.study_version_id, outcome)

    def record(self, study_version_id: int, outcome: Analysed | Skipped) -> str:
        """Store an outcome, unless the version left ANALYSING meanwhile (deadline passed)."""
        now = utcnow()
        with self._database.session() as session:
            if isinstance(outcome, Analysed):
                new, reason = (
                    StudyState.ANALYSED,
                    f"{outcome.summary} (model {outcome.model_version})",
                )
            else:
                new, reason = StudyState.NOT_ANALYSED, outcome.reason
            if not store.transition(session, study_version_id, StudyState.ANALYSING, new, now, reason):
                logger.warning(
                    "study version %d left ANALYSING before its result was recorded",
                    study_version_id,
                )
                return "late"
        logger.info("study version %d: %s", study_version_id, new)
        return str(new)
