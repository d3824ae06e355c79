"""Results -> DICOM Structured Reports (TID 1500, via highdicom), for the PACS and its viewers.

Codes are DICOM's or SNOMED CT's where one exists ("Fracture" is SCT 72704001). The triage states
and scores have no standard code, so they use the private coding scheme ``99TRIAGE`` (PS3.16 8.2:
private schemes begin with 99), defined in ``triage.codes`` and listed in the conformance statement.
The SOP Instance UID is derived from the study, its version and the model, so a re-sent or
re-built report is the same object to the PACS, never a second, different report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import highdicom as hd
from pydicom import Dataset
from pydicom.sr.codedict import codes

from inference.breast import LESION_MIN_SCORE
from inference.cad_report import cad_report
from inference.inputs import StudyImages
from inference.sr_content import (
    FRACTURE,
    IMAGING_PROCEDURE,
    LESION,
    SERIES_DESCRIPTION,
    gate_evaluations,
    notes,
    observation_context,
    qualitative_evaluations,
    region_groups,
    report_uid,
    score,
    study_group,
)
from inference.summary import render, summary_image
from triage import __version__
from triage.codes import (
    ANALYSED,
    DOUBT_THRESHOLD,
    EXAM_PROBABILITY,
    EXAM_SCORE,
    FRACTURE_SCORE,
    FRACTURE_THRESHOLD,
    HIGH_RISK,
    LESION_SCORE,
    READING_ROUTE,
    ROUTE_CODES,
    SINGLE_READ_THRESHOLD,
    STATE_CODES,
    STUDY_SCORE,
    TRIAGE_STATE,
)
from triage.messages import AnalyseStudy
from triage.outcomes import BreastOutcome, FractureOutcome, ModelIdentity, Verdict
from triage.records.results import ResultObject
from triage.records.storage import make_durable

SR_CLASSES = (hd.sr.Comprehensive3DSR, hd.sr.ComprehensiveSR)  # proposed in this order; 2-D regions fit both


def _document(
    sources: Sequence[Dataset],
    groups: Sequence[Any],
    model: ModelIdentity,
    version: int,
    conclusions: hd.sr.ContainerContentItem,
    sr_class: type[hd.sr.Comprehensive3DSR | hd.sr.ComprehensiveSR] = hd.sr.Comprehensive3DSR,
    supersedes: Dataset | None = None,
) -> hd.sr.Comprehensive3DSR | hd.sr.ComprehensiveSR:
    study_uid = str(sources[0].StudyInstanceUID)
    # The same result in another SOP class is another object; so is the report that withdraws one.
    kind = f"{'withdrawal' if supersedes is not None else 'sr'}:{sr_class.__name__}"
    report = hd.sr.MeasurementReport(
        observation_context=observation_context(model),
        procedure_reported=IMAGING_PROCEDURE,
        imaging_measurements=list(groups),
        title=codes.DCM.ImagingMeasurementReport,
    )
    report[0].ContentSequence.append(conclusions)
    return sr_class(
        evidence=list(sources),
        content=report,
        series_instance_uid=report_uid(study_uid, version, model.name, model.version, f"{kind}-series"),
        series_number=9901,
        sop_instance_uid=report_uid(study_uid, version, model.name, model.version, kind),
        instance_number=1,
        manufacturer="triage (open source)",
        is_complete=True,
        is_final=False,
        is_verified=False,
        previous_versions=[supersedes] if supersedes is not None else None,
        series_description=SERIES_DESCRIPTION,
        contributing_equipment=[
            hd.ContributingEquipment(
                manufacturer="triage (open source)",
                purpose_of_reference=codes.DCM.ProcessingEquipment,
                manufacturer_model_name=f"{model.name} {model.version}",
                software_versions=[__version__, model.weights_sha256],
            )
        ],
    )


SrClass = type[hd.sr.Comprehensive3DSR | hd.sr.ComprehensiveSR]


def fracture_report(
    sources: Sequence[Dataset],
    outcome: FractureOutcome,
    model: ModelIdentity,
    version: int,
    reason: str = "",
    sr_class: SrClass = hd.sr.Comprehensive3DSR,
    supersedes: Dataset | None = None,
) -> hd.sr.Comprehensive3DSR | hd.sr.ComprehensiveSR:
    """TID 1500: one planar region per box on its source image, and the study's coded state."""
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
    measurements = [score(STUDY_SCORE, outcome.probability)] if outcome.probability is not None else []
    if outcome.thresholds is not None:  # the operating points in force, frozen with the result
        measurements += [
            score(DOUBT_THRESHOLD, outcome.thresholds.doubt),
            score(FRACTURE_THRESHOLD, outcome.thresholds.fracture),
        ]
    study = study_group(str(sources[0].StudyInstanceUID), version, model, FRACTURE, measurements)
    groups = [*region_groups(by_uid, outcome.marks, FRACTURE, FRACTURE_SCORE, model), study]
    conclusions = qualitative_evaluations(
        [(TRIAGE_STATE, STATE_CODES[outcome.verdict]), *gate_evaluations(outcome)],
        notes(outcome, "" if outcome.analysed else reason or outcome.reason),
    )
    return _document(sources, groups, model, version, conclusions, sr_class, supersedes)


def breast_report(
    sources: Sequence[Dataset],
    outcome: BreastOutcome,
    model: ModelIdentity,
    version: int,
    reason: str = "",
    sr_class: SrClass = hd.sr.Comprehensive3DSR,
    supersedes: Dataset | None = None,
) -> hd.sr.Comprehensive3DSR | hd.sr.ComprehensiveSR:
    """TID 1500: lesion marks per view, the 1-10 score, the reading route and HIGH_RISK, coded."""
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
    measurements = []
    if outcome.score is not None and outcome.probability is not None:
        measurements = [score(EXAM_SCORE, outcome.score), score(EXAM_PROBABILITY, outcome.probability)]
    if outcome.single_read_max_score is not None:  # the threshold in force, frozen with the result
        measurements.append(score(SINGLE_READ_THRESHOLD, outcome.single_read_max_score))
    evaluations = [
        (TRIAGE_STATE, ANALYSED if outcome.analysed else STATE_CODES[Verdict.NOT_ANALYSED]),
        (READING_ROUTE, ROUTE_CODES[Verdict(outcome.route)]),
        (HIGH_RISK, codes.SCT.Yes if outcome.high_risk else codes.SCT.No),
        *gate_evaluations(outcome),
    ]
    study = study_group(str(sources[0].StudyInstanceUID), version, model, LESION, measurements)
    groups = [*region_groups(by_uid, outcome.marks, LESION, LESION_SCORE, model), study]
    conclusions = qualitative_evaluations(
        evaluations, notes(outcome, "" if outcome.analysed else reason or outcome.reason)
    )
    return _document(sources, groups, model, version, conclusions, sr_class, supersedes)


class ReportWriter:
    """Builds a result's SR and summary image (and, for a screen, the Mammography CAD SR) and makes
    them durable under the results folder."""

    def __init__(self, results_dir: Path, mammography_cad_sr: bool = True) -> None:
        self.results_dir = results_dir
        self._cad = mammography_cad_sr

    def keep(self, study_instance_uid: str, dataset: Dataset) -> str:
        """Make one result object durable under the results folder; returns its key."""
        key = f"{study_instance_uid}/{dataset.SOPInstanceUID}.dcm"
        staging = self.results_dir / "incoming" / f"{dataset.SOPInstanceUID}.dcm"
        staging.parent.mkdir(parents=True, exist_ok=True)
        dataset.save_as(staging, enforce_file_format=True)
        make_durable(staging, self.results_dir, key)
        return key

    def write(
        self,
        payload: AnalyseStudy,
        study: StudyImages,
        outcome: FractureOutcome | BreastOutcome,
        model: ModelIdentity,
        reason: str,
    ) -> list[ResultObject]:
        """The summary image, for a screen the Mammography CAD SR, and the SR (in delivery order: the
        SR, which acts, last).

        Raises:
            ValueError: no image of the study has a readable header to report on.
        """
        sources = study.headers
        if not sources:
            raise ValueError("no image of the study has a readable header to report on")
        build = fracture_report if isinstance(outcome, FractureOutcome) else breast_report
        reports = [build(sources, outcome, model, payload.version, reason, c) for c in SR_CLASSES]  # type: ignore[arg-type]
        uids = [
            report_uid(payload.study_instance_uid, payload.version, model.name, model.version, kind)
            for kind in ("sc-series", "sc")
        ]
        sc = summary_image(study, render(study, outcome, reason, f"{model.name} {model.version}"), *uids)
        keys = [self.keep(payload.study_instance_uid, ds) for ds in (sc, *reports)]
        written = [ResultObject("sc", str(sc.SOPInstanceUID), keys[0])]
        if self._cad and isinstance(outcome, BreastOutcome):
            cad = cad_report(sources, outcome, model, payload.version, reason, LESION_MIN_SCORE)
            written.append(
                ResultObject("cad", str(cad.SOPInstanceUID), self.keep(payload.study_instance_uid, cad))
            )
        written.append(ResultObject("sr", str(reports[0].SOPInstanceUID), keys[1], alternate_key=keys[2]))
        return written
