"""Signing in and out with a local account, and who is signed in."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials

from triage.records.accounts import AccountError
from worklist.auth import Throttled
from worklist.deps import Anyone, State, bearer, source
from worklist.schemas import AUTH, Me, PasswordChange, SignedIn, SignIn, problems

router = APIRouter(prefix="/api", tags=["session"])


def too_many(error: Throttled) -> HTTPException:
    """429 with Retry-After: the sign-in throttle's answer."""
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        str(error),
        headers={"Retry-After": f"{math.ceil(error.retry_after)}"},
    )


@router.post("/session", responses=problems(400, 401, 429))
def sign_in(body: SignIn, request: Request, state: State) -> SignedIn:
    """Sign in with a local account; the token lasts ``api_session_hours``. After
    ``sign_in_max_failures`` refusals in ``sign_in_window_seconds`` (per account; four times as
    many per source) the answer is 429 with Retry-After until the window moves on."""
    try:
        session = state.authenticator.sign_in(body.username, body.password, source(request))
    except Throttled as error:
        raise too_many(error) from error
    if session is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "unknown user or wrong password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token, expires, user = session
    return SignedIn(token=token, expires_at=expires, username=user.username, roles=sorted(user.role_set))


@router.delete("/session", status_code=204, responses=AUTH)
def sign_out(
    principal: Anyone,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    state: State,
) -> None:
    """End this session (local accounts)."""
    if credentials is not None:
        state.authenticator.sign_out(credentials.credentials)


@router.post("/me/password", status_code=204, responses=problems(400, 401, 403, 422, 429))
def change_password(
    body: PasswordChange,
    principal: Anyone,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    request: Request,
    state: State,
) -> None:
    """Change your own password (local accounts; 12 characters or more). The current password is
    checked like a sign-in (a wrong one counts towards the sign-in throttle); every other session
    of the account ends. An administrator resets someone else's with ``triage users password``."""
    if not principal.name.startswith("local:") or credentials is None:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "this account's password is kept by the identity provider"
        )
    username = principal.name.removeprefix("local:")
    try:
        changed = state.authenticator.change_own_password(
            credentials.credentials, username, body.current_password, body.new_password, source(request)
        )
    except Throttled as error:
        raise too_many(error) from error
    except AccountError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from error
    if not changed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the current password is wrong")


@router.get("/me", responses=AUTH)
def me(principal: Anyone) -> Me:
    """Who is signed in, with which roles."""
    return Me(name=principal.name, roles=sorted(principal.roles))
