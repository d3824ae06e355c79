"""Who is asking, and what they may do: local accounts, OIDC bearer tokens, roles.

Local accounts (the embedded default) keep an argon2id hash of the password; signing in returns
an opaque token of which only the SHA-256 is stored. With OIDC configured, a JWT bearer token
signed by the issuer's keys (JWKS), for our audience, is accepted too; its roles claim decides
the roles. Every request to patient data names a ``Principal``, which the audit log records.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import secrets
import socket
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from triage.records.db import Database, utcnow
from triage.records.tables import ApiSession, AuditEvent, Role, User
from triage.settings import Settings

logger = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 12
_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters (RFC 9106)
# Verified when the user name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))


class Unprotected(Exception):
    """The API would serve patient data off this machine with no way to sign in configured."""


class AccountError(Exception):
    """An account cannot be created or changed as asked; the message says why."""


@dataclass(frozen=True)
class Principal:
    """Someone signed in: ``local:alice`` or ``oidc:<subject>``, their roles, and where they are."""

    name: str
    roles: frozenset[Role]
    source: str


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return _HASHER.hash(password)


def parse_roles(values: list[str] | tuple[str, ...] | str) -> frozenset[Role]:
    """Roles from names; unknown names fail with the list of known ones."""
    names = values.split(",") if isinstance(values, str) else values
    known = {role.value for role in Role}
    roles = set()
    for name in (n.strip() for n in names if n.strip()):
        if name not in known:
            raise AccountError(f"{name!r} is not a role: use {', '.join(sorted(known))}")
        roles.add(Role(name))
    if not roles:
        raise AccountError(f"give at least one role: {', '.join(sorted(known))}")
    return frozenset(roles)


def add_user(session: Session, username: str, password: str, roles: frozenset[Role], actor: str) -> User:
    """Create a local account, audited; the user name must be new."""
    username = username.strip()
    if not username or len(username) > 64 or not username.isprintable() or "," in username:
        raise AccountError("a user name is 1 to 64 printable characters without a comma")
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise AccountError(f"the user {username!r} exists already")
    user = User(
        username=username,
        password_hash=hash_password(password),
        roles=",".join(sorted(roles)),
        created_at=utcnow(),
    )
    session.add(user)
    session.add(
        AuditEvent(actor=actor, action="user.created", detail=f"{username} ({', '.join(sorted(roles))})")
    )
    return user


def deactivate_user(session: Session, username: str, actor: str) -> bool:
    """Disable an account and end its sessions; False when there is no such account."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        return False
    user.active = False
    session.execute(delete(ApiSession).where(ApiSession.user_id == user.id))
    session.add(AuditEvent(actor=actor, action="user.deactivated", detail=username))
    return True


def active_accounts(session: Session) -> int:
    return int(session.scalar(select(func.count()).where(User.active.is_(True))) or 0)


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


def bootstrap_admin(settings: Settings, database: Database) -> Path | None:
    """On a fresh loopback install, create ``admin`` with a random password kept in a 0600 file.

    Returns the file's path when an account was made (never logs the password itself).
    """
    if not is_loopback(settings.api_host):
        return None
    with database.session() as session:
        if session.scalar(select(func.count()).select_from(User)):
            return None
        password = secrets.token_urlsafe(18)
        add_user(session, "admin", password, frozenset({Role.ADMIN}), actor="triage")
    path = settings.home / "initial-admin-password"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(password + "\n")
    return path


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _claim(claims: dict[str, Any], dotted: str) -> Any:
    value: Any = claims
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


class Authenticator:
    """Signs local accounts in and out, and turns a bearer token into a ``Principal``."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self._settings = settings
        self._database = database
        self._jwks: jwt.PyJWKClient | None = None

    def sign_in(self, username: str, password: str, source: str) -> tuple[str, datetime, User] | None:
        """Check a local account's password; return a new session token, its expiry and the user."""
        now = utcnow()
        with self._database.session() as session:
            user = session.scalar(select(User).where(User.username == username, User.active.is_(True)))
            try:
                _HASHER.verify(user.password_hash if user else _DUMMY_HASH, password)
            except (VerificationError, InvalidHashError):
                user = None
            if user is None:
                session.add(AuditEvent(at=now, actor="anonymous", action="session.refused", source=source))
                return None
            if _HASHER.check_needs_rehash(user.password_hash):
                user.password_hash = _HASHER.hash(password)
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
            session.add(
                AuditEvent(at=now, actor=f"local:{user.username}", action="session.started", source=source)
            )
            return token, expires, user

    def sign_out(self, token: str) -> None:
        with self._database.session() as session:
            session.execute(delete(ApiSession).where(ApiSession.token_sha256 == _token_hash(token)))

    def principal(self, token: str, source: str) -> Principal | None:
        """Who holds ``token``: a live local session, or (OIDC configured) a valid JWT; else None."""
        if token.count(".") == 2 and self._settings.oidc_enabled:
            return self._oidc_principal(token, source)
        with self._database.session() as session:
            row = session.scalar(
                select(ApiSession).where(
                    ApiSession.token_sha256 == _token_hash(token), ApiSession.expires_at > utcnow()
                )
            )
            if row is None or not row.user.active:
                return None
            return Principal(f"local:{row.user.username}", row.user.role_set, source)

    def _jwks_client(self) -> jwt.PyJWKClient:
        if self._jwks is None:
            url = self._settings.oidc_jwks_url
            if url is None:
                issuer = str(self._settings.oidc_issuer).rstrip("/")
                discovery = f"{issuer}/.well-known/openid-configuration"
                with urllib.request.urlopen(discovery, timeout=10) as response:  # noqa: S310 - https URL from settings
                    url = str(json.load(response)["jwks_uri"])
            self._jwks = jwt.PyJWKClient(url, cache_keys=True, lifespan=3600, timeout=10)
        return self._jwks

    def _oidc_principal(self, token: str, source: str) -> Principal | None:
        try:
            key = self._jwks_client().get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"],
                audience=self._settings.oidc_audience,
                issuer=self._settings.oidc_issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
                leeway=30,
            )
        except (jwt.PyJWTError, OSError, KeyError, ValueError) as error:
            logger.info("bearer token refused: %s", type(error).__name__)
            return None
        raw = _claim(claims, self._settings.oidc_roles_claim)
        names = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        known = {role.value for role in Role}
        roles = frozenset(Role(name) for name in names if isinstance(name, str) and name in known)
        subject = str(claims.get("preferred_username") or claims["sub"])
        return Principal(f"oidc:{subject}", roles, source)
