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
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from inference.inputs import StudyImages
from inference.summary import render, summary_image
from triage import __version__
from triage.codes import (
    ANALYSED,
    DECISION_CODES,
    DECISION_NOT_ENABLED,
    DECISION_OVERRIDDEN,
    EXAM_PROBABILITY,
    EXAM_SCORE,
    FRACTURE_SCORE,
    HIGH_RISK,
    IMAGE_NOT_ANALYSED,
    LESION_SCORE,
    NOT_VERIFIED,
    READING_ROUTE,
    REASON,
    ROUTE_CODES,
    STATE_CODES,
    STUDY_SCORE,
    TRIAGE_STATE,
    WHY_NOT_ENABLED,
    WHY_OVERRIDDEN,
)
from triage.messages import AnalyseStudy
from triage.outcomes import BreastOutcome, FractureOutcome, Mark, ModelIdentity, Verdict
from triage.records.results import ResultObject
from triage.records.storage import make_durable

FRACTURE = Code("72704001", "SCT", "Fracture")
LESION = Code("52988006", "SCT", "Lesion")
NO_UNITS = Code("1", "UCUM", "no units")
BOUNDED_BY = Code("75958009", "SCT", "Bounded by")  # CID 219, the value of "Geometric purpose of region"
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
# CID 100 (Quantitative Diagnostic Imaging Procedures) has no projection-radiography or mammography
# entry; its generic "Imaging procedure" is the one a template validator accepts (the modality is in
# the header anyway).
IMAGING_PROCEDURE = Code("363679005", "SCT", "Imaging procedure")
SERIES_DESCRIPTION = NOT_VERIFIED


def report_uid(study_instance_uid: str, version: int, model_name: str, model_version: str, kind: str) -> str:
    """A UID that is the same whenever the same result is reported again."""
    return str(generate_uid(entropy_srcs=[study_instance_uid, str(version), model_name, model_version, kind]))


def score(name: Code, value: float | int) -> hd.sr.Measurement:
    """A unitless score as a TID 300 measurement; integers (the 1-10 score) stay integers."""
    return hd.sr.Measurement(
        name=name, value=value if isinstance(value, int) else float(value), unit=NO_UNITS
    )


def _algorithm(model: ModelIdentity) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=model.name, version=model.version, parameters=[f"weights SHA-256 {model.weights_sha256}"]
    )


def _observation_context(model: ModelIdentity) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=report_uid("device", 0, model.name, model.version, "device"),
        name="triage",
        manufacturer_name="triage (open source)",
        model_name=f"{model.name} {model.version}",
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )


def _region_groups(
    by_uid: dict[str, Dataset],
    marks: Sequence[Mark],
    finding: Code,
    score_name: Code,
    model: ModelIdentity,
) -> list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations]:
    """One TID 1410 group per mark: a closed POLYLINE on the exact source image, marked as a bounding
    box, with its score."""
    groups = []
    for number, mark in enumerate(marks, start=1):
        sop_instance_uid, value = mark.sop_instance_uid, mark.score
        source = by_uid[sop_instance_uid]
        x0, y0, x1, y1 = mark.corners
        region = hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float32),
            source_image=hd.sr.SourceImageForRegion.from_source_image(source),
        )
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=report_uid(sop_instance_uid, number, model.name, model.version, "roi"),
                    identifier=f"{finding.meaning.lower()} {number}",
                ),
                referenced_region=region,
                # CP-1852: "Bounded by" tells a viewer (OHIF, Slicer) the outline is a box around the
                # finding, not the finding's own contour, so it draws and lists it as a box.
                geometric_purpose=BOUNDED_BY,
                finding_type=finding,
                algorithm_id=_algorithm(model),
                measurements=[score(score_name, value)],
            )
        )
    return groups


def _study_group(
    study_uid: str,
    version: int,
    model: ModelIdentity,
    finding: Code,
    measurements: list[hd.sr.Measurement],
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=report_uid(study_uid, version, model.name, model.version, "study"),
            identifier="study result",
        ),
        finding_type=finding,
        algorithm_id=_algorithm(model),
        measurements=measurements or None,
    )


def _qualitative_evaluations(
    evaluations: Sequence[tuple[Code, Code]], notes: Sequence[hd.sr.TextContentItem]
) -> hd.sr.ContainerContentItem:
    """TID 1500's own place for the study's conclusions (row 12, "Qualitative Evaluations"): any
    coded or text item, so triage's state, route and gate sit inside the template rather than beside it."""
    container = hd.sr.ContainerContentItem(name=QUALITATIVE_EVALUATIONS, relationship_type="CONTAINS")
    items = [hd.sr.CodeContentItem(name=n, value=v, relationship_type="CONTAINS") for n, v in evaluations]
    container.ContentSequence = hd.sr.ContentSequence([*items, *notes])
    return container


def _gate_evaluations(outcome: FractureOutcome | BreastOutcome) -> list[tuple[Code, Code]]:
    """The evidence gate frozen into the outcome, as coded items: each decision off, or overridden."""
    return [
        *((DECISION_NOT_ENABLED, DECISION_CODES[d]) for d in sorted(outcome.not_enabled)),
        *((DECISION_OVERRIDDEN, DECISION_CODES[d]) for d in sorted(outcome.overridden)),
    ]


def _notes(outcome: FractureOutcome | BreastOutcome, reason: str) -> list[hd.sr.TextContentItem]:
    """Why the study was not analysed, which images were left out and why, and why each decision of
    the evidence gate is off or overridden, as TEXT items."""
    items = []
    if reason:
        items.append(hd.sr.TextContentItem(name=REASON, value=reason[:1024], relationship_type="CONTAINS"))
    for name, found in ((WHY_NOT_ENABLED, outcome.not_enabled), (WHY_OVERRIDDEN, outcome.overridden)):
        for decision, why in sorted(found.items()):
            value = f"{decision.label}: {why}"[:1024]
            items.append(hd.sr.TextContentItem(name=name, value=value, relationship_type="CONTAINS"))
    for sop_instance_uid, why in sorted(outcome.skipped.items()):
        items.append(
            hd.sr.TextContentItem(
                name=IMAGE_NOT_ANALYSED,
                value=f"{sop_instance_uid}: {why}"[:1024],
                relationship_type="CONTAINS",
            )
        )
    return items


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
        observation_context=_observation_context(model),
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
    study = _study_group(
        str(sources[0].StudyInstanceUID), version, model, FRACTURE,
        [score(STUDY_SCORE, outcome.probability)] if outcome.probability is not None else [],
    )  # fmt: skip
    groups = [*_region_groups(by_uid, outcome.marks, FRACTURE, FRACTURE_SCORE, model), study]
    conclusions = _qualitative_evaluations(
        [(TRIAGE_STATE, STATE_CODES[outcome.verdict]), *_gate_evaluations(outcome)],
        _notes(outcome, "" if outcome.analysed else reason or outcome.reason),
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
    evaluations = [
        (TRIAGE_STATE, ANALYSED if outcome.analysed else STATE_CODES[Verdict.NOT_ANALYSED]),
        (READING_ROUTE, ROUTE_CODES[Verdict(outcome.route)]),
        (HIGH_RISK, codes.SCT.Yes if outcome.high_risk else codes.SCT.No),
        *_gate_evaluations(outcome),
    ]
    study = _study_group(str(sources[0].StudyInstanceUID), version, model, LESION, measurements)
    groups = [*_region_groups(by_uid, outcome.marks, LESION, LESION_SCORE, model), study]
    conclusions = _qualitative_evaluations(
        evaluations, _notes(outcome, "" if outcome.analysed else reason or outcome.reason)
    )
    return _document(sources, groups, model, version, conclusions, sr_class, supersedes)


class ReportWriter:
    """Builds a result's SR and summary image and makes them durable under the results folder."""

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = results_dir

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
        """The summary image and the SR (in delivery order: the SR, which acts, last).

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
        return [
            ResultObject("sc", str(sc.SOPInstanceUID), keys[0]),
            ResultObject("sr", str(reports[0].SOPInstanceUID), keys[1], alternate_key=keys[2]),
        ]
