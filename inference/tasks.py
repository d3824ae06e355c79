"""Thin task bodies: validate the payload, claim the study version, run its pipeline, record.

A task claims its study version (QUEUED -> ANALYSING) before any work, so a duplicate message, a
re-delivery or a re-queue after a restart never analyses a version twice. Anything that fails
ends in NOT_ANALYSED with the reason: the conservative path, visibly. Storage hiccups are retried
a bounded number of times first.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict

from celery.exceptions import SoftTimeLimitExceeded

from inference.model import ModelUnavailable
from inference.reading import StorageUnavailable
from inference.reports import ReportWriter
from inference.schemas import Analysed, Skipped
from triage import __version__
from triage.messages import AnalyseStudy, ReportNotAnalysed
from triage.records import store
from triage.records.db import Database, utcnow
from triage.records.tables import StudyState

logger = logging.getLogger(__name__)

Pipeline = Callable[[AnalyseStudy], Analysed | Skipped]
STORAGE_ATTEMPTS = 3


class AnalyseStudyTask:
    """The body of ``triage.analyse_study``, callable without a broker."""

    def __init__(
        self,
        database: Database,
        pipelines: Mapping[str, Pipeline],
        retry_seconds: float = 1.0,
        reports: ReportWriter | None = None,
        shadows: Callable[[str], Pipeline | None] | None = None,
    ) -> None:
        self._database = database
        self._pipelines = pipelines
        self._retry_seconds = retry_seconds
        self._reports = reports  # None: no PACS configured, nothing to send
        self._shadows = shadows  # the candidate model of a pipeline in shadow mode, if any

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
        state = self.record(payload, self.analyse(payload))
        self.shadow(payload)
        return state

    def shadow(self, payload: AnalyseStudy) -> None:
        """Run the pipeline's candidate model, if one is in shadow mode, after the real result is
        recorded; store what it says. It is never routed, reported or sent, and cannot fail the study."""
        if self._shadows is None:
            return
        try:
            pipeline = self._shadows(payload.pipeline)
            if pipeline is None:
                return
            outcome = pipeline(payload)
        except Exception:  # process boundary: a candidate's failure must not touch the real study
            logger.exception("shadow model failed on study version %d", payload.study_version_id)
            return
        if outcome.model is None:
            return
        with self._database.session() as session:
            store.add_shadow_result(
                session,
                version_id=payload.study_version_id,
                pipeline=payload.pipeline,
                analysed=isinstance(outcome, Analysed),
                summary=outcome.summary if isinstance(outcome, Analysed) else outcome.reason,
                model_name=outcome.model.name,
                model_version=outcome.model.version,
                weights_sha256=outcome.model.weights_sha256,
                outcome=outcome.outcome,
                created_at=utcnow(),
            )

    def analyse(self, payload: AnalyseStudy) -> Analysed | Skipped:
        """Run the study's pipeline; every failure becomes a Skipped with its reason."""
        for attempt in range(1, STORAGE_ATTEMPTS + 1):
            try:
                pipeline = self._pipelines[payload.pipeline]
                return pipeline(payload)
            except KeyError:
                return Skipped(f"no model is installed for the {payload.pipeline} pipeline")
            except ModelUnavailable as error:
                return Skipped(f"the {payload.pipeline} model is unavailable: {error}")
            except SoftTimeLimitExceeded:
                return Skipped("analysis exceeded its time limit")
            except StorageUnavailable as error:
                if attempt == STORAGE_ATTEMPTS:
                    return Skipped(f"storage unavailable after {attempt} attempts: {error}")
                delay = self._retry_seconds * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)  # noqa: S311
                logger.warning("storage unavailable, retrying in %.1f s: %s", delay, error)
                time.sleep(delay)
            except Exception as error:  # process boundary: a bug must not leave a study hanging
                logger.exception("analysis of study version %d failed", payload.study_version_id)
                return Skipped(f"analysis failed: {type(error).__name__}")
        raise AssertionError("unreachable: the last attempt returns")

    def _write_reports(
        self, payload: AnalyseStudy, outcome: Analysed | Skipped, reason: str
    ) -> tuple[list[tuple[str, str, str]], str]:
        """Build and store the SR and summary image; an error is returned, never raised."""
        if self._reports is None or outcome.model is None:
            return [], ""
        try:
            return self._reports.write(payload, outcome.outcome, asdict(outcome.model), reason), ""
        except Exception as error:  # process boundary: a report bug must not lose the result
            logger.exception("reports for study version %d could not be built", payload.study_version_id)
            return [], f"{type(error).__name__}: {error}"

    def record(self, payload: AnalyseStudy, outcome: Analysed | Skipped) -> str:
        """Store the result, unless the version left ANALYSING meanwhile (its deadline passed)."""
        now = utcnow()
        analysed = isinstance(outcome, Analysed)
        new = StudyState.ANALYSED if analysed else StudyState.NOT_ANALYSED
        reason = outcome.summary if isinstance(outcome, Analysed) else outcome.reason
        if outcome.model is not None:
            reason = f"{reason} [model {outcome.model.name} {outcome.model.version}]"
        objects, report_error = self._write_reports(payload, outcome, reason)
        state_reason = reason
        if report_error:  # no reader will see this result: the study stays on the conservative path
            new = StudyState.NOT_ANALYSED
            state_reason = f"{reason}; its report could not be built ({report_error})"
        with self._database.session() as session:
            if not store.transition(
                session, payload.study_version_id, StudyState.ANALYSING, new, now, state_reason
            ):
                logger.warning(
                    "study version %d left ANALYSING before its result was recorded", payload.study_version_id
                )
                return "late"
            model = (
                asdict(outcome.model) if outcome.model else {"name": "", "version": "", "weights_sha256": ""}
            )
            store.add_result(
                session,
                version_id=payload.study_version_id,
                pipeline=payload.pipeline,
                analysed=analysed,
                summary=reason,
                model_name=model["name"],
                model_version=model["version"],
                weights_sha256=model["weights_sha256"],
                software_version=__version__,
                device=outcome.device if isinstance(outcome, Analysed) else "",
                outcome=outcome.outcome,
                inputs={"instances": outcome.inputs if isinstance(outcome, Analysed) else []},
                timings_ms=outcome.timings_ms if isinstance(outcome, Analysed) else {},
                created_at=now,
            )
            for kind, sop_instance_uid, key in objects:
                store.add_delivery(session, payload.study_version_id, kind, sop_instance_uid, key, now)
            if report_error:
                store.add_delivery(
                    session,
                    payload.study_version_id,
                    "sr",
                    "",
                    "",
                    now,
                    failed=f"report not built: {report_error}",
                )
        logger.info("study version %d: %s", payload.study_version_id, new)
        return str(new)


GATE = {
    "name": "triage intended-use gate",
    "version": __version__,
    "weights_sha256": "none (rules, not a model)",
}


class ReportNotAnalysedTask:
    """The body of ``triage.report_not_analysed``: tell the PACS why a routed study was not analysed."""

    def __init__(self, database: Database, reports: ReportWriter | None) -> None:
        self._database = database
        self._reports = reports

    def __call__(self, raw_payload: dict[str, object]) -> str:
        payload = ReportNotAnalysed.model_validate(raw_payload)
        if self._reports is None:
            return "no-pacs"
        with self._database.session() as session:
            if store.has_deliveries(session, payload.study_version_id):
                return "already-reported"
        outcome: dict[str, object] = {"skipped": payload.skipped}
        if payload.pipeline == "breast":
            outcome.update(score=None, route="DOUBLE_READ", high_risk=False, reason=payload.reason)
        objects = self._reports.write(payload, outcome, GATE, payload.reason)
        now = utcnow()
        with self._database.session() as session:
            for kind, sop_instance_uid, key in objects:
                store.add_delivery(session, payload.study_version_id, kind, sop_instance_uid, key, now)
        return "reported"
