"""The content items of triage's SRs (TID 1500 and its sub-templates, via highdicom): the observer,
the planar regions, the study's measurements, and triage's conclusions in TID 1500's "Qualitative
Evaluations" container. ``inference.reports`` assembles them into documents.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from triage.codes import (
    DECISION_CODES,
    DECISION_NOT_ENABLED,
    DECISION_OVERRIDDEN,
    IMAGE_NOT_ANALYSED,
    NOT_VERIFIED,
    REASON,
    WHY_NOT_ENABLED,
    WHY_OVERRIDDEN,
)
from triage.outcomes import BreastOutcome, FractureOutcome, Mark, ModelIdentity

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


def algorithm(model: ModelIdentity) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=model.name, version=model.version, parameters=[f"weights SHA-256 {model.weights_sha256}"]
    )


def observation_context(model: ModelIdentity) -> hd.sr.ObservationContext:
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


def region_groups(
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
                algorithm_id=algorithm(model),
                measurements=[score(score_name, value)],
            )
        )
    return groups


def study_group(
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
        algorithm_id=algorithm(model),
        measurements=measurements or None,
    )


def qualitative_evaluations(
    evaluations: Sequence[tuple[Code, Code]], notes: Sequence[hd.sr.TextContentItem]
) -> hd.sr.ContainerContentItem:
    """TID 1500's own place for the study's conclusions (row 12, "Qualitative Evaluations"): any
    coded or text item, so triage's state, route and gate sit inside the template rather than beside it."""
    container = hd.sr.ContainerContentItem(name=QUALITATIVE_EVALUATIONS, relationship_type="CONTAINS")
    items = [hd.sr.CodeContentItem(name=n, value=v, relationship_type="CONTAINS") for n, v in evaluations]
    container.ContentSequence = hd.sr.ContentSequence([*items, *notes])
    return container


def gate_evaluations(outcome: FractureOutcome | BreastOutcome) -> list[tuple[Code, Code]]:
    """The evidence gate frozen into the outcome, as coded items: each decision off, or overridden."""
    return [
        *((DECISION_NOT_ENABLED, DECISION_CODES[d]) for d in sorted(outcome.not_enabled)),
        *((DECISION_OVERRIDDEN, DECISION_CODES[d]) for d in sorted(outcome.overridden)),
    ]


def notes(outcome: FractureOutcome | BreastOutcome, reason: str) -> list[hd.sr.TextContentItem]:
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
