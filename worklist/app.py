"""The web API and the worklist page: queues, study detail, images, feedback, accounts, audit, metrics.

Every route that shows a patient's data needs a signed-in radiologist and writes an audit event
per study shown (who, what, when, from where). Query strings are never logged: a search may hold
a patient's name.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import AwareDatetime, BaseModel, BeforeValidator, Field, Strict, StrictBool, StrictInt
from sqlalchemy import select
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match

from triage import __version__
from triage.imaging import UnreadableImage, read_dicom
from triage.records import store
from triage.records.db import Database, utcnow
from triage.records.tables import AuditEvent, FeedbackKind, Role, Study, StudyState, User
from triage.settings import Settings
from worklist import labels, views
from worklist.auth import AccountError, Authenticator, Principal, add_user, deactivate_user, parse_roles
from worklist.operations import CachedCheck, DatabaseCollector, database_ready, pacs_check, queue_check

logger = logging.getLogger(__name__)

_STATIC = Path(__file__).resolve().parent / "static"
# Text a person typed: no control characters (PostgreSQL cannot store NUL; logs and CSV choke on the rest).
_TEXT = r"^[^\x00-\x1f\x7f]*$"
_UID = r"^[0-9]+(\.[0-9]+)*$"
_MAX_ID = 2_147_483_647  # the database's 32-bit integer keys

StudyId = Annotated[int, PathParam(ge=1, le=_MAX_ID)]
_ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})$")


def _iso_8601(value: object) -> object:
    # pydantic would also take Unix timestamps ("0.5"); the spec promises RFC 3339 date-times only.
    if isinstance(value, str) and not _ISO_8601.match(value):
        raise ValueError("give an RFC 3339 date-time with its offset, e.g. 2026-11-22T08:00:00Z")
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(_iso_8601)]


class Problem(BaseModel):
    """Why a request failed: a sentence, or (invalid fields) one entry per field with its reason."""

    detail: str | list[dict[str, Any]]


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": Problem} for code in codes}


AUTH = _problems(401, 403)


class Health(BaseModel):
    status: str
    version: str


class Readiness(BaseModel):
    database: bool
    queue: bool
    pacs: Literal["reachable", "unreachable", "not configured"]
    studies_by_state: dict[str, int]


class SignIn(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=_TEXT)
    password: str = Field(min_length=1, max_length=1024, pattern=r"^[^\x00]*$")


class SignedIn(BaseModel):
    token: str = Field(description="Send as 'Authorization: Bearer <token>'")
    expires_at: datetime
    username: str
    roles: list[Role]


class Me(BaseModel):
    name: str
    roles: list[Role]


class WorklistPage(BaseModel):
    queue: views.Queue
    items: list[views.WorklistItem]
    single_read_max_score: int = Field(description="The single-reading threshold in force now")
    revision: int


class Revision(BaseModel):
    revision: int = Field(description="Changes whenever a study changes state or gets a reading")


class BoxIn(BaseModel):
    sop_instance_uid: str = Field(max_length=64, pattern=_UID)
    corners: list[Annotated[float, Strict()]] = Field(
        min_length=4, max_length=4, description="[x0, y0, x1, y1] in source pixels"
    )


class FeedbackIn(BaseModel):
    kind: FeedbackKind = Field(description="FRACTURE for trauma; RECALL or CANCER (the outcome) for screens")
    value: StrictBool = Field(description="Yes (fracture confirmed, recalled, cancer) or no")  # 0 is not no
    boxes: list[BoxIn] = Field(default_factory=list, max_length=20, description="Where, optionally")
    comment: str = Field(default="", max_length=2000, pattern=_TEXT)
    version: StrictInt | None = Field(default=None, ge=1, le=_MAX_ID, description="Default: the latest")


class AuditEntry(BaseModel):
    at: datetime
    actor: str
    action: str
    source: str
    detail: str
    study_id: int | None
    patient_id: str
    accession_number: str


class ConflictResolution(BaseModel):
    reason: str = Field(
        min_length=3, max_length=500, pattern=_TEXT, description="What was checked, and found"
    )


class ConflictResolved(BaseModel):
    study_id: int
    conflict: bool


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f,]*$")
    password: str = Field(min_length=12, max_length=1024, pattern=r"^[^\x00]*$")
    roles: list[Role] = Field(min_length=1)


class UserOut(BaseModel):
    username: str
    roles: list[Role]
    active: bool
    created_at: datetime


_bearer = HTTPBearer(auto_error=False)
_SIGNED_IN = "signed in"


def _source(request: Request) -> str:
    return request.client.host if request.client else ""


def _authenticate(request: Request, token: str | None) -> Principal:
    """The principal behind a bearer token; HTTPException 401 without a valid one."""
    authenticator: Authenticator = request.app.state.authenticator
    principal = authenticator.principal(token, _source(request)) if token else None
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "sign in first: POST /api/session, then send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


def signed_in(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller, as the gate in front of the routes found them (or, outside it, from the token)."""
    caller = getattr(request.state, "caller", None)
    if isinstance(caller, Principal):
        return caller
    principal = _authenticate(request, credentials.credentials if credentials else None)
    request.state.caller = principal
    return principal


signed_in.triage_requires = _SIGNED_IN  # type: ignore[attr-defined]


def _role(required: Role) -> Callable[[Principal], Principal]:
    def check(principal: Annotated[Principal, Depends(signed_in)]) -> Principal:
        if required not in principal.roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the {required} role")
        return principal

    check.triage_requires = required  # type: ignore[attr-defined]
    return check


def _requirement(route: APIRoute) -> Role | str | None:
    """What a route asks of its caller, read from its dependencies: a role, to be signed in, or nothing."""
    found: Role | str | None = None
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        need = getattr(dependency.call, "triage_requires", None)
        if isinstance(need, Role):
            return need
        if need == _SIGNED_IN:
            found = need
        pending.extend(dependency.dependencies)
    return found


Anyone = Annotated[Principal, Depends(signed_in)]
Radiologist = Annotated[Principal, Depends(_role(Role.RADIOLOGIST))]
MlEngineer = Annotated[Principal, Depends(_role(Role.ML_ENGINEER))]
Admin = Annotated[Principal, Depends(_role(Role.ADMIN))]


def _audit(
    session: Session,
    principal: Principal,
    action: str,
    study_ids: list[int] | list[int | None] | None = None,
    detail: str = "",
    now: datetime | None = None,
) -> None:
    """Record what ``principal`` did, from where, to each study given (None: one event, no study)."""
    store.audit(
        session,
        actor=principal.name,
        action=action,
        source=principal.source,
        now=now or utcnow(),
        study_ids=[None] if study_ids is None else study_ids,
        detail=detail,
    )


def create_app(database: Database, settings: Settings) -> FastAPI:
    """Build the app over an open database."""
    app = FastAPI(
        title="triage",
        version=__version__,
        description="Worklist, feedback and operations API of triage. Sign in at POST /api/session "
        "(or bring an OIDC bearer token) and send 'Authorization: Bearer <token>'.",
    )
    authenticator = Authenticator(settings, database)
    app.state.authenticator = authenticator
    queue_ok = CachedCheck(queue_check(settings))
    pacs_probe = pacs_check(settings)
    pacs_ok = CachedCheck(pacs_probe) if pacs_probe else None
    registry = CollectorRegistry(auto_describe=True)
    registry.register(DatabaseCollector(database, pacs_ok))
    label_key = labels.label_key(settings.home)

    requirements: dict[int, Role | str | None] = {}  # filled in once every route is defined

    def _gate(request: Request) -> Response | None:
        """Answer 401/403 before FastAPI reads the body, so a stranger learns nothing from a 422."""
        route = next(
            (
                r
                for r in app.router.routes
                if isinstance(r, APIRoute) and r.matches(request.scope)[0] == Match.FULL
            ),
            None,
        )
        need = requirements.get(id(route)) if route is not None else None
        if need is None:
            return None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        try:
            caller = _authenticate(request, token.strip() if scheme.lower() == "bearer" else None)
        except HTTPException as error:
            return JSONResponse(
                {"detail": error.detail}, status_code=error.status_code, headers=error.headers
            )
        request.state.caller = caller
        if isinstance(need, Role) and need not in caller.roles:
            return JSONResponse({"detail": f"this needs the {need} role"}, status_code=403)
        return None

    @app.middleware("http")
    async def log_and_protect(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        # the gate reads the database (and may fetch OIDC keys): off the event loop
        response = await run_in_threadpool(_gate, request) or await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' blob: data:; frame-ancestors 'none'"
        )
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        logger.info(  # the path only: query strings may hold a patient's name
            "%s %s %d %.0f ms %s",
            request.method,
            request.url.path,
            response.status_code,
            (time.perf_counter() - started) * 1000,
            getattr(getattr(request.state, "caller", None), "name", "-"),
        )
        return response

    @app.exception_handler(405)
    def method_not_allowed(request: Request, error: Exception) -> JSONResponse:
        # Starlette names only the first route's methods when several routes share a path.
        allowed: set[str] = set()
        for route in app.router.routes:
            if isinstance(route, APIRoute) and route.matches(request.scope)[0] != Match.NONE:
                allowed |= route.methods or set()
        return JSONResponse(
            {"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": ", ".join(sorted(allowed))}
        )

    @app.exception_handler(DataError)
    def data_error(request: Request, error: DataError) -> JSONResponse:
        return JSONResponse({"detail": "a value is out of the range the database can store"}, status_code=422)

    # --- operations ----------------------------------------------------------------------------

    @app.get("/healthz", tags=["operations"])
    def healthz() -> Health:
        """The process is up."""
        return Health(status="ok", version=__version__)

    @app.get("/readyz", tags=["operations"], responses={503: {"model": Readiness}})
    def readyz(response: Response) -> Readiness:
        """Ready when the database answers and the queue takes tasks; the PACS is reported (results
        wait and retry while it is away, so it does not make triage unready)."""
        db_ok = database_ready(database)
        counts: dict[str, int] = {}
        if db_ok:
            with database.session() as session:
                counts = store.count_by_state(session)
        ready_queue = queue_ok()
        pacs: Literal["reachable", "unreachable", "not configured"] = (
            "not configured" if pacs_ok is None else "reachable" if pacs_ok() else "unreachable"
        )
        if not (db_ok and ready_queue):
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Readiness(database=db_ok, queue=ready_queue, pacs=pacs, studies_by_state=counts)

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=PlainTextResponse,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    def metrics() -> Response:
        """Prometheus metrics (no patient data)."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # --- signing in ----------------------------------------------------------------------------

    @app.post("/api/session", tags=["session"], responses=_problems(400, 401))
    def sign_in(body: SignIn, request: Request) -> SignedIn:
        """Sign in with a local account; the token lasts ``api_session_hours``."""
        session = authenticator.sign_in(body.username, body.password, _source(request))
        if session is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "unknown user or wrong password",
                headers={"WWW-Authenticate": "Bearer"},
            )
        token, expires, user = session
        return SignedIn(token=token, expires_at=expires, username=user.username, roles=sorted(user.role_set))

    @app.delete("/api/session", tags=["session"], status_code=204, responses=AUTH)
    def sign_out(
        principal: Anyone, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> None:
        """End this session (local accounts)."""
        if credentials is not None:
            authenticator.sign_out(credentials.credentials)

    @app.get("/api/me", tags=["session"], responses=AUTH)
    def me(principal: Anyone) -> Me:
        """Who is signed in, with which roles."""
        return Me(name=principal.name, roles=sorted(principal.roles))

    # --- the worklist --------------------------------------------------------------------------

    @app.get("/api/worklist", tags=["worklist"], responses=AUTH)
    def worklist(
        principal: Radiologist,
        queue: views.Queue = views.Queue.ALL,
        state: StudyState | None = None,
        received_from: Instant | None = None,
        received_to: Instant | None = None,
        search: Annotated[str, Query(max_length=64, pattern=_TEXT)] = "",
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> WorklistPage:
        """One queue's studies, most urgent first; every study listed is audited as viewed."""
        filters = views.WorklistFilters(
            queue=queue,
            state=state,
            received_from=received_from,
            received_to=received_to,
            search=search,
            limit=limit,
        )
        with database.session() as session:
            items = views.worklist(session, filters)
            page = WorklistPage(
                queue=queue,
                items=items,
                single_read_max_score=settings.single_read_max_score,
                revision=views.revision(session),
            )
            _audit(
                session,
                principal,
                "worklist.viewed",
                study_ids=[item.study_id for item in items],
                detail=f"queue {queue}",
            )
        return page

    @app.get("/api/worklist/revision", tags=["worklist"], responses=AUTH)
    def worklist_revision(principal: Anyone) -> Revision:
        """Cheap to poll, no patient data: the page reloads its queue only when this changes."""
        with database.session() as session:
            return Revision(revision=views.revision(session))

    @app.get("/api/studies/{study_id}", tags=["worklist"], responses=_problems(401, 403, 404))
    def study(study_id: StudyId, principal: Radiologist) -> views.StudyDetail:
        """One study: patient, versions with their history, results, deliveries, images, readings."""
        with database.session() as session:
            detail = views.study_detail(session, study_id)
            if detail is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no study {study_id}")
            _audit(session, principal, "study.viewed", study_ids=[study_id])
        return detail

    @app.get(
        "/api/studies/{study_id}/images/{sop_instance_uid}",
        tags=["worklist"],
        response_class=Response,
        responses={
            200: {"content": {"image/png": {}}, "description": "The image, windowed, as PNG"},
            **_problems(401, 403, 404, 422),
        },
    )
    def image(
        study_id: StudyId,
        sop_instance_uid: Annotated[str, PathParam(max_length=64, pattern=_UID)],
        principal: Radiologist,
        size: Annotated[int, Query(ge=64, le=4096, description="Longest side in pixels")] = 1024,
    ) -> Response:
        """One image of the study rendered from its DICOM (Modality LUT, VOI LUT or window,
        MONOCHROME1 inverted). Headers X-Source-Columns/Rows give the source size that boxes use."""
        with database.session() as session:
            instance = views.find_instance(session, study_id, sop_instance_uid)
            if instance is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such image in this study")
            _audit(session, principal, "image.viewed", study_ids=[study_id], detail=sop_instance_uid)
            key = instance.storage_key
        try:
            pixels, _ = read_dicom(settings.storage_dir / key)
        except UnreadableImage as error:
            raise HTTPException(422, f"the stored image cannot be shown: {error}") from error
        rows, columns = pixels.shape
        picture = Image.fromarray((pixels * 255).round().astype("uint8"))
        picture.thumbnail((size, size), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        picture.save(out, "PNG")
        return Response(
            out.getvalue(),
            media_type="image/png",
            headers={"X-Source-Columns": str(columns), "X-Source-Rows": str(rows)},
        )

    @app.post(
        "/api/studies/{study_id}/feedback",
        tags=["feedback"],
        status_code=201,
        responses=_problems(400, 401, 403, 404, 422),
    )
    def feedback(study_id: StudyId, body: FeedbackIn, principal: Radiologist) -> views.FeedbackView:
        """Record a reading: fracture confirmed or not (and where); recall or not; later, cancer or not."""
        now = utcnow()
        for box in body.boxes:
            x0, y0, x1, y1 = box.corners
            if not (0 <= x0 < x1 and 0 <= y0 < y1):
                raise HTTPException(422, "a box is [x0, y0, x1, y1] with 0 <= x0 < x1 and 0 <= y0 < y1")
        with database.session() as session:
            if session.get(Study, study_id) is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no study {study_id}")
            try:
                row = store.add_feedback(
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
            except store.FeedbackRejected as error:
                raise HTTPException(422, str(error)) from error
            _audit(
                session,
                principal,
                "feedback.recorded",
                study_ids=[study_id],
                detail=f"{body.kind}={'yes' if body.value else 'no'} label {row.label_id}",
                now=now,
            )
            session.flush()
            detail = views.study_detail(session, study_id)
        assert detail is not None
        return next(f for f in detail.feedback if f.label_id == row.label_id)

    # --- labels for retraining ----------------------------------------------------------------

    @app.get(
        "/api/labels",
        tags=["labels"],
        response_model=list[labels.Label],
        responses={200: {"content": {"text/csv": {}}}, **AUTH},
    )
    def export_labels(principal: MlEngineer, format: Literal["json", "csv"] = "json") -> Any:
        """Every reading as a training label, without patient identity (opaque keys only)."""
        with database.session() as session:
            rows = labels.export(session, label_key)
            _audit(session, principal, "labels.exported", detail=f"{len(rows)} labels, {format}")
        if format == "csv":
            return Response(
                labels.to_csv(rows),
                media_type="text/csv",
                headers={"Content-Disposition": 'attachment; filename="triage-labels.csv"'},
            )
        return rows

    # --- administration -----------------------------------------------------------------------

    @app.get("/api/audit", tags=["admin"], responses=AUTH)
    def audit_log(
        principal: Admin,
        patient_id: Annotated[str | None, Query(max_length=64, pattern=_TEXT)] = None,
        study_id: Annotated[int | None, Query(ge=1, le=_MAX_ID)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> list[AuditEntry]:
        """Who accessed a patient's (or a study's) data, newest first; this lookup is audited too."""
        with database.session() as session:
            query = (
                select(AuditEvent, Study)
                .outerjoin(Study, Study.id == AuditEvent.study_id)
                .order_by(AuditEvent.id.desc())
                .limit(limit)
            )
            if patient_id is not None:
                query = query.where(Study.patient_id == patient_id)
            if study_id is not None:
                query = query.where(AuditEvent.study_id == study_id)
            entries = [
                AuditEntry(
                    at=event.at,
                    actor=event.actor,
                    action=event.action,
                    source=event.source,
                    detail=event.detail,
                    study_id=event.study_id,
                    patient_id=study.patient_id if study else "",
                    accession_number=study.accession_number if study else "",
                )
                for event, study in session.execute(query).all()
            ]
            seen = sorted({e.study_id for e in entries if e.study_id is not None})
            _audit(session, principal, "audit.viewed", study_ids=list(seen) or None)
        return entries

    @app.post(
        "/api/studies/{study_id}/conflict/resolve",
        tags=["admin"],
        responses=_problems(400, 401, 403, 404, 409, 422),
    )
    def resolve_conflict(study_id: StudyId, body: ConflictResolution, principal: Admin) -> ConflictResolved:
        """Clear a study's conflicting-duplicate flag once someone has checked the quarantined
        object; versions received from now on are analysed again. What was NOT ANALYSED stays so."""
        with database.session() as session:
            study = session.get(Study, study_id)
            if study is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no study {study_id}")
            if not study.conflict:
                raise HTTPException(status.HTTP_409_CONFLICT, "the study has no conflict to resolve")
            study.conflict = False
            _audit(session, principal, "conflict.resolved", study_ids=[study_id], detail=body.reason)
        return ConflictResolved(study_id=study_id, conflict=False)

    @app.get("/api/users", tags=["admin"], responses=AUTH)
    def users(principal: Admin) -> list[UserOut]:
        """Local accounts."""
        with database.session() as session:
            return [
                UserOut(
                    username=u.username, roles=sorted(u.role_set), active=u.active, created_at=u.created_at
                )
                for u in session.scalars(select(User).order_by(User.username))
            ]

    @app.post("/api/users", tags=["admin"], status_code=201, responses=_problems(400, 401, 403, 409, 422))
    def create_user(body: UserIn, principal: Admin) -> UserOut:
        """Create a local account (password at least 12 characters, hashed with argon2id)."""
        try:
            with database.session() as session:
                user = add_user(
                    session,
                    body.username,
                    body.password,
                    parse_roles([r.value for r in body.roles]),
                    principal.name,
                )
                return UserOut(
                    username=user.username,
                    roles=sorted(user.role_set),
                    active=True,
                    created_at=user.created_at,
                )
        except AccountError as error:
            raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from error

    @app.delete("/api/users/{username}", tags=["admin"], status_code=204, responses=_problems(401, 403, 404))
    def remove_user(
        username: Annotated[str, PathParam(max_length=64, pattern=_TEXT)], principal: Admin
    ) -> None:
        """Deactivate an account and end its sessions (kept for the audit trail)."""
        with database.session() as session:
            if not deactivate_user(session, username, principal.name):
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {username!r}")

    @app.get("/api/settings", tags=["admin"], responses=AUTH)
    def service_settings(principal: Admin) -> dict[str, Any]:
        """The settings in force (read-only: they come from the environment and the YAML file)."""
        values = settings.model_dump(mode="json")
        if settings.database_url:  # may hold a password
            values["database_url"] = settings.database_url.split("@")[-1]
        if settings.broker_url:
            values["broker_url"] = settings.broker_url.split("@")[-1]
        return values

    # --- the page ------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(_STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=_STATIC), name="static")
    requirements.update({id(r): _requirement(r) for r in app.router.routes if isinstance(r, APIRoute)})
    return app
