"""A screen's result as a Mammography CAD SR (PS3.16 TID 4000), the object mammography workstations
draw CAD marks from. highdicom has no builder for it, so the content tree is assembled here from
highdicom's content items:

    Mammography CAD Report (TID 4000)
      Language, observer device (TID 1001)
      Image Library: each view with its laterality and view (TID 4020)
      CAD Processing and Findings Summary (CID 6047: with or without findings, or no algorithm
      succeeded when the screen was not analysed)
        triage's exam result (private EXAM-RESULT container: the standard has no exam score): the
        1-10 score, the model score, the reading route, HIGH-RISK, and why when not analysed
        Individual Impression/Recommendation (TID 4003), one per lesion: a single-image finding
        (TID 4006, CID 6014's "Mammography breast density") with its certainty, the CAD operating
        point, its centre and its outline on the referenced view
      Summary of Detections / of Analyses (CID 6042): succeeded, by reference to the library's
      views, or not attempted

The outlines carry a rendering intent: "Presentation Required" when the model's evidence supports
showing its boxes (the evidence gate, frozen into the outcome), else "Not for Presentation": a
workstation then keeps them for a site's audit without drawing them. The SOP Instance UID is
derived from the study, its version and the model, so a re-sent report is the same object.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from highdicom.sr.sop import _SR
from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.coding import Code

from inference import cad_codes as dcm
from inference.sr_content import SERIES_DESCRIPTION, observation_context, report_uid
from triage import __version__
from triage.codes import (
    EXAM_PROBABILITY,
    EXAM_RESULT,
    EXAM_SCORE,
    HIGH_RISK,
    READING_ROUTE,
    REASON,
    ROUTE_CODES,
)
from triage.outcomes import BreastOutcome, Decision, ModelIdentity, Verdict
from triage.view_codes import view


class MammographyCadSR(_SR):
    """The Mammography CAD SR IOD (PS3.3 A.35.5): highdicom's SR document base (its private ``_SR``,
    which its public SR classes extend; the version range is pinned) with this SOP class."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(sop_class_uid=dcm.MAMMOGRAPHY_CAD_SR, **kwargs)  # type: ignore[arg-type]


def _code(name: Code, value: Code, relationship: str) -> hd.sr.CodeContentItem:
    return hd.sr.CodeContentItem(name=name, value=value, relationship_type=relationship)


def _plain(item: Dataset) -> Dataset:
    plain = Dataset()
    plain.update(item)
    return plain


# highdicom gives every content item a concept name, reads them back when it builds the document and
# knows no by-reference item. TID 4020's and TID 4006's IMAGE items have no name, and TID 4017/4018
# reference the image library's entries: both stand in as named items until the document is built,
# and take their real form then (``_finish``).
_UNNAMED = Code("UNNAMED", "99TRIAGE", "no concept name")
_REFERENCE = Code("REFERENCE", "99TRIAGE", "by reference")


def _finish(sequence: Sequence[Dataset]) -> None:
    for item in sequence:
        names = item.get("ConceptNameCodeSequence") or []
        if item.get("ValueType") == "IMAGE" and names and names[0].get("CodeValue") == _UNNAMED.value:
            del item.ConceptNameCodeSequence
        _finish(item.get("ContentSequence") or [])
        children = item.get("ContentSequence") or []
        for k, child in enumerate(children):
            names = child.get("ConceptNameCodeSequence") or []
            if names and names[0].get("CodeValue") == _REFERENCE.value:
                reference = Dataset()
                reference.RelationshipType = child.RelationshipType
                reference.ReferencedContentItemIdentifier = [int(n) for n in child.TextValue.split(".")]
                children[k] = reference


def _by_reference(position: Sequence[int]) -> Dataset:
    """An R-INFERRED FROM reference to a content item by its position in the tree (1 is the root)."""
    return hd.sr.TextContentItem(
        name=_REFERENCE, value=".".join(map(str, position)), relationship_type="INFERRED FROM"
    )


def _container(name: Code, children: Sequence[Dataset], relationship: str | None = "CONTAINS") -> Dataset:
    return _with(hd.sr.ContainerContentItem(name=name, relationship_type=relationship), children)


def _with(item: Dataset, children: Sequence[Dataset]) -> Dataset:
    plain = _plain(item)
    plain.ContentSequence = DicomSequence(list(children))
    return plain


def _image(source: Dataset, relationship: str) -> hd.sr.ImageContentItem:
    """An IMAGE item, without a concept name once the document is built."""
    return hd.sr.ImageContentItem(
        name=_UNNAMED,
        referenced_sop_class_uid=source.SOPClassUID,
        referenced_sop_instance_uid=source.SOPInstanceUID,
        relationship_type=relationship,
    )


def _library_entry(source: Dataset) -> Dataset:
    """TID 4020: the view with its laterality and view, as the workstation hangs it."""
    context = []
    side = str(source.get("ImageLaterality") or source.get("Laterality") or "")
    if side in dcm.LATERALITY:
        context.append(_code(dcm.IMAGE_LATERALITY, dcm.LATERALITY[side], "HAS ACQ CONTEXT"))
    found = dcm.VIEWS.get(view(source))
    if found is not None:
        context.append(_code(dcm.IMAGE_VIEW, found, "HAS ACQ CONTEXT"))
    return _with(_image(source, "CONTAINS"), context)


def _algorithm(model: ModelIdentity) -> list[Dataset]:
    return [
        hd.sr.TextContentItem(name=dcm.ALGORITHM_NAME, value=model.name, relationship_type="HAS PROPERTIES"),
        hd.sr.TextContentItem(
            name=dcm.ALGORITHM_VERSION, value=model.version, relationship_type="HAS PROPERTIES"
        ),
    ]


def _lesions(
    outcome: BreastOutcome, by_uid: dict[str, Dataset], model: ModelIdentity, operating_point: float
) -> list[Dataset]:
    """TID 4003 with one TID 4006 finding each; the outline a closed polyline around the lesion's box."""
    intent = dcm.NOT_FOR_PRESENTATION if Decision.BOXES in outcome.not_enabled else dcm.PRESENTATION_REQUIRED
    found = []
    for findings in outcome.per_view:
        source = by_uid.get(findings.sop_instance_uid)
        if source is None:
            continue
        for lesion in findings.lesions:
            x0, y0, x1, y1 = lesion.corners
            outline = hd.sr.ScoordContentItem(
                name=dcm.OUTLINE,
                graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                graphic_data=np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float32),
                relationship_type="HAS PROPERTIES",
            )
            center = hd.sr.ScoordContentItem(
                name=dcm.CENTER,
                graphic_type=hd.sr.GraphicTypeValues.POINT,
                graphic_data=np.array([[(x0 + x1) / 2, (y0 + y1) / 2]], dtype=np.float32),
                relationship_type="HAS PROPERTIES",
            )
            mass = _with(
                _code(dcm.SINGLE_IMAGE_FINDING, dcm.DENSITY, "CONTAINS"),
                [
                    _code(dcm.RENDERING_INTENT, intent, "HAS CONCEPT MOD"),
                    *_algorithm(model),
                    hd.sr.NumContentItem(
                        name=dcm.CERTAINTY,
                        value=round(100 * float(lesion.score), 1),
                        unit=dcm.PERCENT,
                        relationship_type="HAS PROPERTIES",
                    ),
                    hd.sr.NumContentItem(
                        name=dcm.OPERATING_POINT,
                        value=float(operating_point),
                        unit=dcm.NO_UNITS,
                        relationship_type="HAS PROPERTIES",
                    ),
                    _with(center, [_image(source, "SELECTED FROM")]),
                    _with(outline, [_image(source, "SELECTED FROM")]),
                ],
            )
            found.append(
                _container(
                    dcm.INDIVIDUAL,
                    [_code(dcm.RENDERING_INTENT, intent, "HAS CONCEPT MOD"), mass],
                    "INFERRED FROM",
                )
            )
    return found


def _overall(outcome: BreastOutcome, reason: str) -> Dataset:
    items: list[Dataset] = []
    if outcome.score is not None and outcome.probability is not None:
        items += [
            hd.sr.NumContentItem(
                name=EXAM_SCORE, value=outcome.score, unit=dcm.NO_UNITS, relationship_type="CONTAINS"
            ),
            hd.sr.NumContentItem(
                name=EXAM_PROBABILITY,
                value=float(outcome.probability),
                unit=dcm.NO_UNITS,
                relationship_type="CONTAINS",
            ),
        ]
    items += [
        _code(READING_ROUTE, ROUTE_CODES[Verdict(outcome.route)], "CONTAINS"),
        _code(
            HIGH_RISK,
            Code("373066001", "SCT", "Yes") if outcome.high_risk else Code("373067005", "SCT", "No"),
            "CONTAINS",
        ),
    ]
    if reason:
        items.append(hd.sr.TextContentItem(name=REASON, value=reason[:1024], relationship_type="CONTAINS"))
    return _container(EXAM_RESULT, items, "INFERRED FROM")


def _performed(
    outcome: BreastOutcome, model: ModelIdentity, library: Sequence[int], sources: Sequence[Dataset]
) -> list[Dataset]:
    """Summary of Detections and of Analyses: what the model did on which views of the image
    library (by reference), or that it was not attempted."""
    analysed = outcome.analysed

    def performed(name: Code, value: Code) -> Dataset:
        references = [_by_reference([*library, k]) for k in range(1, len(sources) + 1)]
        images = [_image(source, "INFERRED FROM") for source in sources]
        return _with(_code(name, value, "CONTAINS"), [*_algorithm(model), *references, *images])

    detection = performed(dcm.DETECTION_PERFORMED, dcm.DENSITY)
    analysis = performed(dcm.ANALYSIS_PERFORMED, dcm.OVERALL_ANALYSIS)
    if not analysed:  # nothing was attempted: the summary says so, and the exam result says why
        return [
            _code(dcm.DETECTIONS, dcm.NOT_ATTEMPTED, "CONTAINS"),
            _code(dcm.ANALYSES, dcm.NOT_ATTEMPTED, "CONTAINS"),
        ]
    return [
        _with(
            _code(dcm.DETECTIONS, dcm.SUCCEEDED, "CONTAINS"),
            [_container(dcm.SUCCESSFUL_DETECTIONS, [detection], "INFERRED FROM")],
        ),
        _with(
            _code(dcm.ANALYSES, dcm.SUCCEEDED, "CONTAINS"),
            [_container(dcm.SUCCESSFUL_ANALYSES, [analysis], "INFERRED FROM")],
        ),
    ]


def cad_report(
    sources: Sequence[Dataset],
    outcome: BreastOutcome,
    model: ModelIdentity,
    version: int,
    reason: str = "",
    operating_point: float = 0.5,
) -> MammographyCadSR:
    """TID 4000 for a screen, analysed or not (then: no algorithm succeeded, and why)."""
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
    lesions = _lesions(outcome, by_uid, model, operating_point) if outcome.analysed else []
    summary_value = dcm.WITH_FINDINGS if lesions else dcm.WITHOUT_FINDINGS
    if not outcome.analysed:
        summary_value = dcm.NONE_SUCCEEDED
    why = "" if outcome.analysed else reason or outcome.reason
    head = [_code(dcm.LANGUAGE, dcm.ENGLISH, "HAS CONCEPT MOD"), *observation_context(model)]
    library = [1, len(head) + 1]  # the Image Library's position: the root's next child
    root = _with(hd.sr.ContainerContentItem(name=dcm.REPORT, template_id="4000"), [
        *head,
        _container(dcm.IMAGE_LIBRARY, [_library_entry(ds) for ds in sources]),
        _with(_code(dcm.SUMMARY, summary_value, "CONTAINS"), [_overall(outcome, why), *lesions]),
        *_performed(outcome, model, library, sources),
    ])  # fmt: skip
    study_uid = str(sources[0].StudyInstanceUID)
    report = MammographyCadSR(
        evidence=list(sources),
        content=root,
        series_instance_uid=report_uid(study_uid, version, model.name, model.version, "cad-series"),
        series_number=9903,
        sop_instance_uid=report_uid(study_uid, version, model.name, model.version, "cad"),
        instance_number=1,
        manufacturer="triage (open source)",
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description=SERIES_DESCRIPTION,
        contributing_equipment=[
            hd.ContributingEquipment(
                manufacturer="triage (open source)",
                purpose_of_reference=Code("109101", "DCM", "Processing Equipment"),
                manufacturer_model_name=f"{model.name} {model.version}",
                software_versions=[__version__, model.weights_sha256],
            )
        ],
    )
    _finish(report.ContentSequence)
    return report
