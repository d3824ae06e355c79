"""Administration: the audit log, local accounts, the settings in force."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi import Path as PathParam
from pydantic import JsonValue
from sqlalchemy import select

from triage.records.accounts import AccountError, add_user, deactivate_user, parse_roles
from triage.records.audit_actions import AuditAction
from triage.records.tables import AuditEvent, Study, User
from worklist.deps import Admin, State, audit
from worklist.schemas import AUTH, MAX_ID, TEXT, AuditEntry, UserIn, UserOut, problems

router = APIRouter(prefix="/api", tags=["admin"])


@router.get("/audit", responses=AUTH)
def audit_log(
    request: Request,
    response: Response,
    principal: Admin,
    state: State,
    patient_id: Annotated[str | None, Query(max_length=64, pattern=TEXT)] = None,
    study_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    action: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_.]+$")] = None,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AuditEntry]:
    """Who accessed a patient's (or a study's) data, newest first; this lookup is audited too.

    Pages of ``limit``: while older entries remain, the ``Link`` header names the next page
    (``rel="next"``, the same filters with ``before_id``)."""
    with state.database.session() as session:
        query = (
            select(AuditEvent, Study)
            .outerjoin(Study, Study.id == AuditEvent.study_id)
            .order_by(AuditEvent.id.desc())
            .limit(limit + 1)
        )
        if action is not None:
            query = query.where(AuditEvent.action == action)
        if before_id is not None:
            query = query.where(AuditEvent.id < before_id)
        if patient_id is not None:
            query = query.where(Study.patient_id == patient_id)
        if study_id is not None:
            query = query.where(AuditEvent.study_id == study_id)
        rows = session.execute(query).all()
        entries = [
            AuditEntry(
                id=event.id,
                at=event.at,
                actor=event.actor,
                action=event.action,
                source=event.source,
                detail=event.detail,
                study_id=event.study_id,
                patient_id=study.patient_id if study else "",
                accession_number=study.accession_number if study else "",
            )
            for event, study in rows[:limit]
        ]
        seen = sorted({e.study_id for e in entries if e.study_id is not None})
        audit(session, principal, AuditAction.AUDIT_VIEWED, list(seen) or None)
    if len(rows) > limit:
        following = request.url.include_query_params(before_id=entries[-1].id)
        response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
    return entries


def _user_out(user: User) -> UserOut:
    return UserOut(
        username=user.username, roles=sorted(user.role_set), active=user.active, created_at=user.created_at
    )


@router.get("/users", responses=AUTH)
def users(principal: Admin, state: State) -> list[UserOut]:
    """Local accounts."""
    with state.database.session() as session:
        return [_user_out(u) for u in session.scalars(select(User).order_by(User.username))]


@router.post("/users", status_code=201, responses=problems(400, 401, 403, 409, 422))
def create_user(body: UserIn, principal: Admin, state: State) -> UserOut:
    """Create a local account (password at least 12 characters, hashed with argon2id)."""
    try:
        with state.database.session() as session:
            roles = parse_roles([r.value for r in body.roles])
            return _user_out(
                add_user(session, body.username, body.password, roles, principal.name, principal.source)
            )
    except AccountError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from error


@router.delete("/users/{username}", status_code=204, responses=problems(401, 403, 404, 409))
def remove_user(
    username: Annotated[str, PathParam(max_length=64, pattern=TEXT)], principal: Admin, state: State
) -> None:
    """Deactivate an account and end its sessions (kept for the audit trail); never the last
    active admin (409)."""
    try:
        with state.database.session() as session:
            if not deactivate_user(session, username, principal.name, principal.source):
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {username!r}")
    except AccountError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from error


@router.get("/settings", responses=AUTH)
def service_settings(principal: Admin, state: State) -> dict[str, JsonValue]:
    """The settings in force (read-only: they come from the environment and the YAML file); every
    secret (database and broker URLs, passwords and keys inside any other URL) is shown masked."""
    return cast(dict[str, JsonValue], state.settings.shown())
