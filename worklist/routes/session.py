"""Signing in and out with a local account, and who is signed in."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials

from worklist.deps import Anyone, State, bearer, source
from worklist.schemas import AUTH, Me, SignedIn, SignIn, problems

router = APIRouter(prefix="/api", tags=["session"])


@router.post("/session", responses=problems(400, 401))
def sign_in(body: SignIn, request: Request, state: State) -> SignedIn:
    """Sign in with a local account; the token lasts ``api_session_hours``."""
    session = state.authenticator.sign_in(body.username, body.password, source(request))
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


@router.get("/me", responses=AUTH)
def me(principal: Anyone) -> Me:
    """Who is signed in, with which roles."""
    return Me(name=principal.name, roles=sorted(principal.roles))
