"""Signing in from the page with the hospital's identity provider (authorization code + PKCE)."""

from __future__ import annotations

import urllib.parse
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import RedirectResponse
from pydantic import BaseModel

from triage.records import store
from triage.records.audit_actions import AuditAction
from triage.records.db import utcnow
from worklist.deps import State, source
from worklist.oidc_login import COOKIE, LOGIN_SECONDS, LoginRefused
from worklist.schemas import problems

router = APIRouter(prefix="/api/oidc", tags=["session"])
_OPAQUE = r"^[A-Za-z0-9._~\-]+$"
_PATH = "/api/oidc"  # the sign-in's cookie goes to these routes only


class OidcSignIn(BaseModel):
    enabled: bool


@router.get("")
def oidc_sign_in(state: State) -> OidcSignIn:
    """Whether the page offers sign-in with the identity provider."""
    return OidcSignIn(enabled=state.logins.enabled)


@router.get("/login", status_code=302, response_class=RedirectResponse, responses=problems(404, 503))
def login(
    state: State, tab: Annotated[str, Query(min_length=16, max_length=64, pattern=_OPAQUE)]
) -> RedirectResponse:
    """Send the browser to the identity provider (a new one-time state, PKCE S256, a nonce), with the
    sign-in in a cookie of its own; ``tab`` is the page's random mark, given back with the token."""
    if not state.logins.enabled:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "sign-in with the identity provider is not configured")
    try:
        url, cookie = state.logins.start(tab)
    except (LoginRefused, OSError, KeyError, ValueError) as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"the identity provider: {error}") from error
    response = RedirectResponse(url, status_code=302)
    secure = str(state.settings.oidc_redirect_url).startswith("https://")
    response.set_cookie(
        COOKIE, cookie, max_age=LOGIN_SECONDS, path=_PATH, secure=secure, httponly=True, samesite="lax"
    )
    return response


@router.get("/callback", status_code=302, response_class=RedirectResponse, responses=problems(404, 422))
def callback(
    request: Request,
    state: State,
    code: Annotated[str, Query(max_length=2048, pattern=_OPAQUE)] = "",
    state_: Annotated[str, Query(alias="state", max_length=256, pattern=_OPAQUE)] = "",
    error: Annotated[str, Query(max_length=256, pattern=_OPAQUE)] = "",
) -> RedirectResponse:
    """Where the provider sends the browser back: the code is traded, the ID token checked, and the
    page gets it in the URL fragment. A refusal goes back to the page with why, and is audited."""
    if not state.logins.enabled:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "sign-in with the identity provider is not configured")
    try:
        if error:
            raise LoginRefused(f"the identity provider refused: {error}")
        token, claims, tab = state.logins.finish(state_, code, request.cookies.get(COOKIE, ""))
    except LoginRefused as refused:
        with state.database.session() as session:
            detail = f"identity provider sign-in: {refused}"
            store.audit(session, actor="anonymous", action=AuditAction.SESSION_REFUSED,
                        source=source(request), now=utcnow(), detail=detail)  # fmt: skip
        return _back_to_the_page({"sign-in-error": str(refused)})
    name, _ = state.authenticator.oidc_identity(claims)
    with state.database.session() as session:
        store.audit(session, actor=name, action=AuditAction.SESSION_STARTED, source=source(request),
                    now=utcnow(), detail="identity provider sign-in (authorization code, PKCE)")  # fmt: skip
    return _back_to_the_page({"token": token, "tab": tab})


def _back_to_the_page(fragment: dict[str, str]) -> RedirectResponse:
    """To the page with ``fragment``; the sign-in's cookie is spent either way."""
    response = RedirectResponse("/#" + urllib.parse.urlencode(fragment), status_code=302)
    response.delete_cookie(COOKIE, path=_PATH)
    return response
