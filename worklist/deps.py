"""What routes depend on: the caller (authenticated, with a role), the database, the settings, audit.

401 and 403 are decided by a gate in front of the routes, before FastAPI reads a body, so a stranger
learns nothing from a 422; the role a route needs is read from its dependencies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match

from triage.records import store
from triage.records.audit_actions import AuditAction
from triage.records.db import Database, utcnow
from triage.records.security import SecurityLog
from triage.records.tables import Role
from triage.settings import Settings
from worklist.auth import Authenticator, Principal, Refused
from worklist.images import RenderCache
from worklist.oidc_login import LoginFlows
from worklist.operations import Cached, CachedCheck

_SIGNED_IN = "signed in"
bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class AppState:
    """Everything the routes share, built once by ``create_app``."""

    database: Database
    settings: Settings
    authenticator: Authenticator
    label_key: bytes
    metrics: Cached[bytes]  # the exposition text, rendered at most every metrics_cache_seconds
    queue_ready: CachedCheck
    security: SecurityLog  # refused tokens and 403s, written to the audit log in batches
    renders: RenderCache  # the PNGs of images shown lately
    logins: LoginFlows  # sign-ins with the identity provider in progress


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.triage
    return state


State = Annotated[AppState, Depends(_state)]


def source(request: Request) -> str:
    """Where a request came from, as the audit records it."""
    return request.client.host if request.client else ""


def authenticate(request: Request, token: str | None) -> Principal:
    """The principal behind a bearer token; HTTPException 401 without a valid one (a token that was
    sent and refused is audited; no token at all is the page before sign-in, and is not)."""
    state = _state(request)
    principal = state.authenticator.principal(token, source(request)) if token else None
    if isinstance(principal, Refused):
        state.security.record(
            actor="anonymous",
            action=AuditAction.TOKEN_REFUSED,
            source=source(request),
            detail=principal.reason,
        )
    if not isinstance(principal, Principal):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "sign in first: POST /api/session, then send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


def signed_in(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    """The caller, as the gate in front of the routes found them (or, outside it, from the token)."""
    caller = getattr(request.state, "caller", None)
    if isinstance(caller, Principal):
        return caller
    principal = authenticate(request, credentials.credentials if credentials else None)
    request.state.caller = principal
    return principal


signed_in.triage_requires = _SIGNED_IN  # type: ignore[attr-defined]


def forbidden(request: Request, principal: Principal, required: Role) -> str:
    """Audit a signed-in caller refused for want of a role; the 403's reason. The path is recorded,
    never the query string (a search may hold a patient's name)."""
    _state(request).security.record(
        actor=principal.name,
        action=AuditAction.ACCESS_FORBIDDEN,
        source=principal.source,
        detail=f"{request.method} {request.url.path} needs the {required} role",
    )
    return f"this needs the {required} role"


def _role(required: Role) -> Callable[..., Principal]:
    def check(request: Request, principal: Annotated[Principal, Depends(signed_in)]) -> Principal:
        if required not in principal.roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, forbidden(request, principal, required))
        return principal

    check.triage_requires = required  # type: ignore[attr-defined]
    return check


Anyone = Annotated[Principal, Depends(signed_in)]
Radiologist = Annotated[Principal, Depends(_role(Role.RADIOLOGIST))]
MlEngineer = Annotated[Principal, Depends(_role(Role.ML_ENGINEER))]
Admin = Annotated[Principal, Depends(_role(Role.ADMIN))]


def audit(
    session: Session,
    principal: Principal,
    action: AuditAction,
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


def install_gate(app: FastAPI, routes: list[APIRoute]) -> None:
    """Answer 401/403 before FastAPI reads the body, for every route given (each with its full path;
    an included router's own routes are, and FastAPI's app-level route list no longer holds them)."""
    requirements = {id(route): _requirement(route) for route in routes}

    def gate(request: Request) -> Response | None:
        route = next((r for r in routes if r.matches(request.scope)[0] == Match.FULL), None)
        need = requirements.get(id(route)) if route is not None else None
        if need is None:
            return None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        try:
            caller = authenticate(request, token.strip() if scheme.lower() == "bearer" else None)
        except HTTPException as error:
            return JSONResponse(
                {"detail": error.detail}, status_code=error.status_code, headers=error.headers
            )
        request.state.caller = caller
        if isinstance(need, Role) and need not in caller.roles:
            return JSONResponse({"detail": forbidden(request, caller, need)}, status_code=403)
        return None

    async def guarded(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # the gate reads the database (and may fetch OIDC keys): off the event loop
        return await run_in_threadpool(gate, request) or await call_next(request)

    app.middleware("http")(guarded)
