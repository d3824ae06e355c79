"""One study: its detail, its images rendered from the DICOM, readings, and clearing a conflict."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi import Path as PathParam
from sqlalchemy import select

from triage.imaging import UnreadableImage, decode_image, png
from triage.records import conflicts, live_evidence, queries, readings, withdrawals
from triage.records.audit_actions import AuditAction
from triage.records.db import utcnow
from triage.records.tables import Study
from triage.stored import StorageUnavailable, StoredUnreadable, open_stored
from worklist.deps import Admin, Radiologist, State, audit
from worklist.detail import FeedbackView, StudyDetail, study_detail
from worklist.images import Rendered
from worklist.pixels import full_depth
from worklist.schemas import (
    UID,
    ConflictResolution,
    ConflictResolved,
    FeedbackIn,
    Retracted,
    Retraction,
    StudyId,
    StudyRef,
    ViewerLaunch,
    problems,
)

router = APIRouter(prefix="/api/studies", tags=["worklist"])


@router.get("/{study_id}", responses=problems(401, 403, 404))
def study(study_id: StudyId, principal: Radiologist, state: State) -> StudyDetail:
    """One study: patient, versions with their history, results, deliveries, images, readings."""
    with state.database.reading() as session:
        detail = study_detail(session, study_id)
    if detail is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no study {study_id}")
    with state.database.session() as session:
        audit(session, principal, AuditAction.STUDY_VIEWED, [study_id])
    return detail


@router.get("/by-uid/{study_instance_uid}", responses=problems(401, 403, 404, 422))
def study_by_uid(
    study_instance_uid: Annotated[str, PathParam(max_length=64, pattern=UID)],
    principal: Radiologist,
    state: State,
) -> StudyRef:
    """The study with this Study Instance UID (how a PACS's "triage result" button finds it)."""
    with state.database.reading() as session:
        found = session.scalar(select(Study.id).where(Study.study_instance_uid == study_instance_uid))
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no study with this Study Instance UID")
    return StudyRef(study_id=found)


@router.post("/{study_id}/viewer", responses=problems(401, 403, 404))
def open_in_viewer(study_id: StudyId, principal: Radiologist, state: State) -> ViewerLaunch:
    """The site's PACS viewer URL for the study (``pacs_viewer_url``); the launch is audited."""
    template = state.settings.pacs_viewer_url
    if template is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no PACS viewer is configured (pacs_viewer_url)")
    with state.database.session() as session:
        study = session.get(Study, study_id)
        if study is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no study {study_id}")
        url = template.format(
            study_instance_uid=quote(study.study_instance_uid, safe=""),
            accession_number=quote(study.accession_number, safe=""),
            patient_id=quote(study.patient_id, safe=""),
        )
        audit(session, principal, AuditAction.VIEWER_LAUNCHED, [study_id], "opened in the PACS viewer")
    return ViewerLaunch(url=url)


def _routed_image(
    study_id: int, sop_instance_uid: str, principal: Radiologist, state: State
) -> tuple[str, str | None]:
    """The storage key and hash of an image of the study that routing sent to a pipeline, its view
    audited; 404 for another, 410 once retention removed it."""
    with state.database.reading() as session:
        instance = queries.find_instance(session, sop_instance_uid, study_id)
        key = None if instance is None else instance.storage_key
        sha256 = None if instance is None else instance.sha256
        removed = instance is not None and instance.removed_at is not None
        routed = instance is not None and instance.routed
    if key is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such image in this study")
    if not routed:  # never decoded here: a tomosynthesis volume, a report, what no model reads
        raise HTTPException(status.HTTP_404_NOT_FOUND, "triage shows only the images it routes; see the PACS")
    if removed:
        raise HTTPException(
            status.HTTP_410_GONE, "the original was removed under the retention setting; the PACS holds it"
        )
    with state.database.session() as session:
        audit(session, principal, AuditAction.IMAGE_VIEWED, [study_id], sop_instance_uid)
    return key, sha256


@router.get(
    "/{study_id}/images/{sop_instance_uid}/pixels",
    response_class=Response,
    responses={
        200: {
            "content": {"application/octet-stream": {}},
            "description": "The image's values at full depth, little-endian uint16, row by row",
        },
        **problems(401, 403, 404, 410, 422, 503),
    },
)
def image_pixels(
    study_id: StudyId,
    sop_instance_uid: Annotated[str, PathParam(max_length=64, pattern=UID)],
    principal: Radiologist,
    state: State,
    size: Annotated[int, Query(ge=64, le=4096, description="Longest side in pixels")] = 2048,
) -> Response:
    """For the reading viewer: frame 0 with its Modality LUT applied, at full depth (never re-windowed
    to 8 bits), sized down by area averaging. Headers: X-Rows/Columns of the values, X-Source-Rows/
    Columns (the size boxes use), X-Value-Offset and X-Value-Scale (modality value = value * scale +
    offset), X-Window-Center/Width (the image's default, modality units), X-Invert (MONOCHROME1),
    X-Row-Direction (PatientOrientation's first value, which hangs a mammogram)."""
    key, sha256 = _routed_image(study_id, sop_instance_uid, principal, state)
    settings = state.settings
    try:
        found = full_depth(open_stored(settings.storage_dir, key, sha256, settings.home), size)
    except (UnreadableImage, StoredUnreadable) as error:
        raise HTTPException(422, f"the stored image cannot be shown: {error}") from error
    except StorageUnavailable as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from error
    return Response(found.values, media_type="application/octet-stream", headers=found.headers())


@router.get(
    "/{study_id}/images/{sop_instance_uid}",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "The image, windowed, as PNG"},
        **problems(401, 403, 404, 410, 422, 503),
    },
)
def image(
    study_id: StudyId,
    sop_instance_uid: Annotated[str, PathParam(max_length=64, pattern=UID)],
    principal: Radiologist,
    state: State,
    size: Annotated[int, Query(ge=64, le=4096, description="Longest side in pixels")] = 1024,
) -> Response:
    """One image of the study that routing sent to a pipeline, rendered from its DICOM (Modality
    LUT, VOI LUT or window, MONOCHROME1 inverted); of a multi-frame image, frame 0 alone. Headers
    X-Source-Columns/Rows give the source size that boxes use, X-Frames how many frames it has."""
    key, sha256 = _routed_image(study_id, sop_instance_uid, principal, state)
    settings = state.settings

    def render() -> Rendered:
        stored = open_stored(settings.storage_dir, key, sha256, settings.home)
        decoded = decode_image(stored, first_frame=True)
        rows, columns = decoded.pixels.shape
        frames = int(decoded.dataset.get("NumberOfFrames") or 1)
        return Rendered(png(decoded.pixels, size), rows, columns, frames)

    try:
        rendered = state.renders.get(key, size, render)
    except (UnreadableImage, StoredUnreadable) as error:
        raise HTTPException(422, f"the stored image cannot be shown: {error}") from error
    except StorageUnavailable as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from error
    headers = {"X-Source-Columns": str(rendered.columns), "X-Source-Rows": str(rendered.rows)}
    return Response(
        rendered.png, media_type="image/png", headers={**headers, "X-Frames": str(rendered.frames)}
    )


@router.post(
    "/{study_id}/feedback", tags=["feedback"], status_code=201, responses=problems(400, 401, 403, 404, 422)
)
def feedback(study_id: StudyId, body: FeedbackIn, principal: Radiologist, state: State) -> FeedbackView:
    """Record a reading: fracture confirmed or not (and where); recall or not; later, cancer or not."""
    now = utcnow()
    for box in body.boxes:
        x0, y0, x1, y1 = box.corners
        if not (0 <= x0 < x1 and 0 <= y0 < y1):
            raise HTTPException(422, "a box is [x0, y0, x1, y1] with 0 <= x0 < x1 and 0 <= y0 < y1")
    with state.database.session() as session:
        if session.get(Study, study_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no study {study_id}")
        try:
            row = readings.add_feedback(
                session,
                study_id=study_id,
                kind=body.kind,
                value=body.value,
                boxes=[box.model_dump() for box in body.boxes],
                comment=body.comment,
                author=principal.name,
                now=now,
                version_number=body.version,
            )
        except readings.FeedbackRejected as error:
            raise HTTPException(422, str(error)) from error
        detail = f"{body.kind}={'yes' if body.value else 'no'} label {row.label_id}"
        audit(session, principal, AuditAction.FEEDBACK_RECORDED, [study_id], detail, now)
        session.flush()
        live_evidence.check(session, state.settings, now)  # an outcome may switch a decision off
        found = study_detail(session, study_id)
    assert found is not None, "the study was just read in this transaction"
    return next(f for f in found.feedback if f.label_id == row.label_id)


@router.post("/{study_id}/conflict/resolve", tags=["admin"], responses=problems(400, 401, 403, 404, 409, 422))
def resolve_conflict(
    study_id: StudyId, body: ConflictResolution, principal: Admin, state: State
) -> ConflictResolved:
    """Clear a study's conflicting-duplicate flag once someone has checked the quarantined
    object; versions received from now on are analysed again. What was NOT ANALYSED stays so."""
    with state.database.session() as session:
        found = session.get(Study, study_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no study {study_id}")
        if not found.conflict:
            raise HTTPException(status.HTTP_409_CONFLICT, "the study has no conflict to resolve")
        conflicts.clear_conflict(
            session, found, actor=principal.name, source=principal.source, reason=body.reason, now=utcnow()
        )
    return ConflictResolved(study_id=study_id, conflict=False)


@router.post("/{study_id}/result/retract", tags=["admin"], responses=problems(400, 401, 403, 404, 409, 422))
def retract_result(study_id: StudyId, body: Retraction, principal: Admin, state: State) -> Retracted:
    """Withdraw the AI verdict that acts on a study (a model found faulty, a wrong patient): the
    study goes NOT ANALYSED (read as usual, double read), objects not yet sent are not sent, and
    what the PACS has is superseded by a NOT ANALYSED SR and rejected by an IOCM note."""
    with state.database.session() as session:
        if session.get(Study, study_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no study {study_id}")
        withdrawn = withdrawals.retract(
            session, study_id, body.reason, state.database.now(), principal.name, principal.source
        )
        if withdrawn is None:
            raise HTTPException(status.HTTP_409_CONFLICT, "no AI verdict acts on this study")
    return Retracted(
        study_id=study_id, version=withdrawn.version_number, superseded_at_pacs=withdrawn.superseded_at_pacs
    )
