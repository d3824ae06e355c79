"""Thin task bodies: validate the payload, claim the study version, read it, run its pipeline, record.

A task claims its study version (QUEUED -> ANALYSING) before any work, so a duplicate message, a
re-delivery or a re-queue after a restart never analyses a version twice. Anything that fails
ends in NOT_ANALYSED with the reason: the conservative path, visibly. Storage hiccups are retried
a bounded number of times first. The study's images are read once and shared by the pipeline,
the shadow model and the reports.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded

from inference.inputs import StudyImages, read_study
from inference.model import ModelUnavailable
from inference.reports import ReportWriter
from triage import __version__
from triage.messages import AnalyseStudy, ReportNotAnalysed
from triage.outcomes import Analysed, BreastOutcome, FractureOutcome, ModelIdentity, Skipped, not_analysed
from triage.pipelines import Pipeline
from triage.records import queries, results, store
from triage.records.db import Database
from triage.records.results import ResultObject
from triage.records.tables import StudyState
from triage.stored import StorageUnavailable

logger = logging.getLogger(__name__)

PipelineRun = Callable[[AnalyseStudy, StudyImages], Analysed | Skipped]
STORAGE_ATTEMPTS = 3
GATE = ModelIdentity("triage intended-use gate", __version__, "none (rules, not a model)")


Reader = Callable[[AnalyseStudy, Path], StudyImages]


def read_with_retries(
    payload: AnalyseStudy, storage_dir: Path, retry_seconds: float, reader: Reader = read_study
) -> StudyImages | str:
    """The study's images, or why storage could not give them after ``STORAGE_ATTEMPTS`` tries."""
    for attempt in range(1, STORAGE_ATTEMPTS + 1):
        try:
            return reader(payload, storage_dir)
        except StorageUnavailable as error:
            if attempt == STORAGE_ATTEMPTS:
                return f"storage unavailable after {attempt} attempts: {error}"
            delay = retry_seconds * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)  # noqa: S311
            logger.warning("storage unavailable, retrying in %.1f s: %s", delay, error)
            time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns")


class AnalyseStudyTask:
    """The body of ``triage.analyse_study``, callable without a broker."""

    def __init__(
        self,
        database: Database,
        pipelines: Mapping[Pipeline, PipelineRun],
        storage_dir: Path,
        retry_seconds: float = 1.0,
        reports: ReportWriter | None = None,
        shadows: Callable[[Pipeline], PipelineRun | None] | None = None,
        reader: Reader = read_study,
        hold_after_claim_seconds: float = 0.0,
    ) -> None:
        self._reader = reader  # a test passes a storage that fails
        self._hold = (
            hold_after_claim_seconds  # the fault suite's hook (settings.fault_hold_after_claim_seconds)
        )
        self._database = database
        self._pipelines = pipelines
        self._storage_dir = storage_dir
        self._retry_seconds = retry_seconds
        self._reports = reports  # None: no PACS configured, nothing to send
        self._shadows = shadows  # the candidate model of a pipeline in shadow mode, if any

    def __call__(self, raw_payload: dict[str, object]) -> str:
        payload = AnalyseStudy.model_validate(raw_payload)
        now = self._database.now()
        with self._database.session() as session:
            claimed = store.transition(
                session, payload.study_version_id, StudyState.QUEUED, StudyState.ANALYSING, now,
                "claimed by a worker", claimed_at=now,
            )  # fmt: skip
        if not claimed:
            logger.info("study version %d is not queued (any more); nothing to do", payload.study_version_id)
            return "not-queued"
        if self._hold > 0:
            logger.warning(
                "fault injection: holding study version %d for %.0f s", payload.study_version_id, self._hold
            )
            time.sleep(self._hold)
        study = read_with_retries(payload, self._storage_dir, self._retry_seconds, self._reader)
        if isinstance(study, str):
            return self.record(payload, None, Skipped(payload.pipeline, study, skipped=payload.skipped))
        state = self.record(payload, study, self.analyse(payload, study))
        self.shadow(payload, study)
        return state

    def shadow(self, payload: AnalyseStudy, study: StudyImages) -> None:
        """Run the pipeline's candidate model, if one is in shadow mode, after the real result is
        recorded; store what it says. It is never routed, reported or sent, and cannot fail the study."""
        if self._shadows is None:
            return
        try:
            pipeline = self._shadows(payload.pipeline)
            if pipeline is None:
                return
            result = pipeline(payload, study)
        except Exception:  # process boundary: a candidate's failure must not touch the real study
            logger.exception("shadow model failed on study version %d", payload.study_version_id)
            return
        if result.model is None:
            return
        summary = result.summary if isinstance(result, Analysed) else result.reason
        with self._database.session() as session:
            results.add_shadow_result(
                session, payload.study_version_id, result.outcome, result.model, summary, self._database.now()
            )

    def analyse(self, payload: AnalyseStudy, study: StudyImages) -> Analysed | Skipped:
        """Run the study's pipeline; every failure becomes a Skipped with its reason."""
        try:
            pipeline = self._pipelines[payload.pipeline]
        except KeyError:
            return Skipped(payload.pipeline, f"no model is installed for the {payload.pipeline} pipeline")
        except ModelUnavailable as error:
            return Skipped(payload.pipeline, f"the {payload.pipeline} model is unavailable: {error}")
        try:
            return pipeline(payload, study)
        except ModelUnavailable as error:
            return Skipped(payload.pipeline, f"the {payload.pipeline} model is unavailable: {error}")
        except SoftTimeLimitExceeded:
            return Skipped(payload.pipeline, "analysis exceeded its time limit")
        except Exception as error:  # process boundary: a bug must not leave a study hanging
            logger.exception("analysis of study version %d failed", payload.study_version_id)
            return Skipped(payload.pipeline, f"analysis failed: {type(error).__name__}")

    def _write_reports(
        self,
        payload: AnalyseStudy,
        study: StudyImages | None,
        outcome: FractureOutcome | BreastOutcome,
        model: ModelIdentity | None,
        reason: str,
    ) -> tuple[list[ResultObject], str]:
        """Build and store the SR and summary image; an error is returned, never raised."""
        if self._reports is None or model is None:
            return [], ""
        if study is None:
            return [], "the study's images could not be read"
        try:
            return self._reports.write(payload, study, outcome, model, reason), ""
        except Exception as error:  # process boundary: a report bug must not lose the result
            logger.exception("reports for study version %d could not be built", payload.study_version_id)
            return [], type(error).__name__  # its message may quote a patient's value

    def record(self, payload: AnalyseStudy, study: StudyImages | None, result: Analysed | Skipped) -> str:
        """Store the result, unless the version left ANALYSING meanwhile (its deadline passed)."""
        now = self._database.now()
        new = StudyState.ANALYSED if isinstance(result, Analysed) else StudyState.NOT_ANALYSED
        reason = result.summary if isinstance(result, Analysed) else result.reason
        if result.model is not None:
            reason = f"{reason} [model {result.model.name} {result.model.version}]"
        objects, report_error = self._write_reports(payload, study, result.outcome, result.model, reason)
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
            results.add_result(
                session, payload.study_version_id, result.outcome, result.model,
                summary=reason, software_version=__version__, now=now,
                device=result.device if isinstance(result, Analysed) else "",
                inputs=result.inputs if isinstance(result, Analysed) else [],
                timings_ms=result.timings_ms if isinstance(result, Analysed) else {},
            )  # fmt: skip
            for written in objects:
                results.add_delivery(session, payload.study_version_id, written, now)
            if report_error:
                failed = f"report not built: {report_error}"
                results.add_delivery(
                    session, payload.study_version_id, ResultObject("sr", "", ""), now, failed=failed
                )
        logger.info("study version %d: %s", payload.study_version_id, new)
        return str(new)


class ReportNotAnalysedTask:
    """The body of ``triage.report_not_analysed``: tell the PACS why a routed study was not analysed."""

    def __init__(self, database: Database, storage_dir: Path, reports: ReportWriter | None) -> None:
        self._database = database
        self._storage_dir = storage_dir
        self._reports = reports

    def __call__(self, raw_payload: dict[str, object]) -> str:
        payload = ReportNotAnalysed.model_validate(raw_payload)
        if self._reports is None:
            return "no-pacs"
        with self._database.session() as session:
            if queries.has_deliveries(session, payload.study_version_id):
                return "already-reported"
        study = read_with_retries(payload, self._storage_dir, retry_seconds=1.0)
        objects: list[ResultObject] = []
        error = study if isinstance(study, str) else ""
        if not isinstance(study, str):
            try:
                outcome = not_analysed(payload.pipeline, payload.reason, payload.skipped)
                objects = self._reports.write(payload, study, outcome, GATE, payload.reason)
            except Exception as failure:  # process boundary: the failure must be visible, not lost
                logger.exception("the not-analysed report of version %d failed", payload.study_version_id)
                error = f"{type(failure).__name__}: {failure}"
        now = self._database.now()
        with self._database.session() as session:
            for written in objects:
                results.add_delivery(session, payload.study_version_id, written, now)
            if error:
                failed = f"report not built: {error}"
                results.add_delivery(
                    session, payload.study_version_id, ResultObject("sr", "", ""), now, failed=failed
                )
        return "reported" if objects else "not-reported"
