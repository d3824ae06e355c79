"""Who is asking, and what they may do: local accounts, OIDC bearer tokens, roles.

Local accounts (the embedded default) keep an argon2id hash of the password; signing in returns
an opaque token of which only the SHA-256 is stored. With OIDC configured, a JWT bearer token
signed by the issuer's keys (JWKS), for our audience, is accepted too; its roles claim decides
the roles. Every request to patient data names a ``Principal``, which the audit log records.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from triage.records import store
from triage.records.accounts import (
    DUMMY_HASH,
    HASHER,
    active_accounts,
    change_password,
    initial_password_file,
)
from triage.records.audit_actions import AuditAction
from triage.records.db import Database, utcnow
from triage.records.tables import ApiSession, Role, User
from triage.settings import Settings
from worklist.oidc import TokenVerifier
from worklist.throttle import SignInThrottle

logger = logging.getLogger(__name__)


class Throttled(Exception):
    """Too many refused sign-ins lately; ``retry_after`` seconds until the next may be tried."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many refused sign-ins; try again in {retry_after:.0f} s")
        self.retry_after = retry_after


class Unprotected(Exception):
    """The API would serve patient data off this machine with no way to sign in configured."""


@dataclass(frozen=True)
class Principal:
    """Someone signed in: ``local:alice`` or ``oidc:<subject>``, their roles, and where they are."""

    name: str
    roles: frozenset[Role]
    source: str


@dataclass(frozen=True)
class Refused:
    """Why a bearer token was not accepted (audited as ``token.refused``)."""

    reason: str


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) only ever means this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
        except OSError:
            return False
        return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def check_exposure(settings: Settings, database: Database) -> None:
    """Refuse to serve off loopback unless someone can sign in (an active local account, or OIDC).

    Raises:
        Unprotected: with the message an operator needs.
    """
    if is_loopback(settings.api_host) or settings.oidc_enabled:
        return
    with database.session() as session:
        if active_accounts(session):
            return
    raise Unprotected(
        f"refusing to serve the API on {settings.api_host}: no way to sign in is configured, so "
        "patient data would be reachable by no one or, worse, by anyone. Add an account with "
        "'triage users add NAME --role admin' or set TRIAGE_OIDC_ISSUER and TRIAGE_OIDC_AUDIENCE; "
        "or listen on 127.0.0.1 (TRIAGE_API_HOST)."
    )


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    """Signs local accounts in and out, and turns a bearer token into a ``Principal``."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self._settings = settings
        self._database = database
        self._tokens = TokenVerifier(settings)
        self._throttle = SignInThrottle(settings.sign_in_max_failures, settings.sign_in_window_seconds)

    def sign_in(self, username: str, password: str, source: str) -> tuple[str, datetime, User] | None:
        """Check a local account's password; return a new session token, its expiry and the user.

        The password is verified outside any transaction (argon2 takes a while), so sign-ins never
        hold the write lock ingest commits wait for.

        Raises:
            Throttled: too many refused sign-ins for this account or from this source lately.
        """
        now = utcnow()
        wait = self._throttle.retry_after(username, source, time.monotonic())
        if wait > 0:
            self._refused(username, source, now, "throttled")
            raise Throttled(wait)
        with self._database.reading() as session:
            user = session.scalar(select(User).where(User.username == username, User.active.is_(True)))
            user_id, stored = (user.id, user.password_hash) if user else (None, DUMMY_HASH)
        try:
            HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            user_id = None
        with self._database.session() as session:
            user = session.get(User, user_id) if user_id is not None else None
            if user is None or not user.active:
                self._throttle.failed(username, source, time.monotonic())
                self._refused(username, source, now, "wrong password or unknown user", session)
                return None
            self._throttle.succeeded(username)
            if HASHER.check_needs_rehash(user.password_hash):
                user.password_hash = HASHER.hash(password)
            token = secrets.token_urlsafe(32)
            expires = now + timedelta(hours=self._settings.api_session_hours)
            session.execute(delete(ApiSession).where(ApiSession.expires_at < now))
            session.add(
                ApiSession(
                    token_sha256=_token_hash(token),
                    user_id=user.id,
                    created_at=now,
                    expires_at=expires,
                    source=source,
                )
            )
            store.audit(
                session,
                actor=f"local:{user.username}",
                action=AuditAction.SESSION_STARTED,
                source=source,
                now=now,
            )
        if user.username == "admin":
            self._forget_initial_password()
        return token, expires, user

    def _forget_initial_password(self) -> None:
        """The first start's password file has done its work once admin signed in: remove it."""
        path = initial_password_file(self._settings.home)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        logger.info("admin signed in: removed %s (change the password: POST /api/me/password)", path)

    def change_own_password(self, token: str, username: str, current: str, new: str, source: str) -> bool:
        """A local account's user changes their password: ``current`` is checked like a sign-in
        (throttled, refusals audited); every other session of the account ends. False: wrong.

        Raises:
            Throttled: too many refused sign-ins for this account or from this source lately.
            AccountError: the new password is too short.
        """
        now = utcnow()
        wait = self._throttle.retry_after(username, source, time.monotonic())
        if wait > 0:
            self._refused(username, source, now, "throttled (password change)")
            raise Throttled(wait)
        with self._database.reading() as session:
            stored = session.scalar(select(User.password_hash).where(User.username == username)) or DUMMY_HASH
        try:
            HASHER.verify(stored, current)
        except (VerificationError, InvalidHashError):
            self._throttle.failed(username, source, time.monotonic())
            self._refused(username, source, now, "wrong current password (password change)")
            return False
        with self._database.session() as session:
            change_password(session, username, new, f"local:{username}", source, keep=_token_hash(token))
        return True

    def _refused(
        self, username: str, source: str, now: datetime, why: str, session: Session | None = None
    ) -> None:
        """Audit a refused sign-in with the name tried (in the audit log only, never a log line)."""
        if session is None:
            with self._database.session() as own:
                self._refused(username, source, now, why, own)
            return
        detail = f"{why}; name tried: {username[:64]}"
        store.audit(
            session,
            actor="anonymous",
            action=AuditAction.SESSION_REFUSED,
            source=source,
            now=now,
            detail=detail,
        )

    def sign_out(self, token: str) -> None:
        with self._database.session() as session:
            session.execute(delete(ApiSession).where(ApiSession.token_sha256 == _token_hash(token)))

    def principal(self, token: str, source: str) -> Principal | Refused:
        """Who holds ``token``: a live local session, or (OIDC configured) a valid JWT; else why not."""
        if token.count(".") == 2 and self._settings.oidc_enabled:
            return self._oidc_principal(token, source)
        with self._database.reading() as session:
            row = session.scalar(
                select(ApiSession).where(
                    ApiSession.token_sha256 == _token_hash(token), ApiSession.expires_at > utcnow()
                )
            )
            if row is None:
                return Refused("no live session holds this token (unknown, signed out or expired)")
            if not row.user.active:
                return Refused(f"the account local:{row.user.username} is deactivated")
            return Principal(f"local:{row.user.username}", row.user.role_set, source)

    @property
    def tokens(self) -> TokenVerifier:
        return self._tokens

    def oidc_identity(self, claims: dict[str, Any]) -> tuple[str, frozenset[Role]]:
        return self._tokens.identity(claims)

    def _oidc_principal(self, token: str, source: str) -> Principal | Refused:
        try:
            claims = self._tokens.claims(token)
        except (jwt.PyJWTError, OSError, KeyError, ValueError) as error:
            logger.info("bearer token refused: %s", type(error).__name__)
            return Refused(f"OIDC token refused: {type(error).__name__}")
        name, roles = self._tokens.identity(claims)
        return Principal(name, roles, source)
