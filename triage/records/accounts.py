"""Local accounts: argon2id password hashes, roles, creation and deactivation (audited).

The web API signs people in against these (``worklist.auth``); ``triage users`` manages them.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from argon2 import PasswordHasher
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from triage.records import store
from triage.records.audit_actions import AuditAction
from triage.records.db import Database, utcnow
from triage.records.tables import ApiSession, Role, User

MIN_PASSWORD_LENGTH = 12
HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters (RFC 9106)
# Verified when the user name is unknown, so a wrong name costs as long as a wrong password.
DUMMY_HASH = HASHER.hash(secrets.token_hex(16))


class AccountError(Exception):
    """An account cannot be created or changed as asked; the message says why."""


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return HASHER.hash(password)


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


def add_user(
    session: Session, username: str, password: str, roles: frozenset[Role], actor: str, source: str = ""
) -> User:
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
        active=True,
        created_at=utcnow(),
    )
    session.add(user)
    detail = f"{username} ({', '.join(sorted(roles))})"
    store.audit(
        session, actor=actor, action=AuditAction.USER_CREATED, source=source, now=utcnow(), detail=detail
    )
    for role in sorted(roles):  # each grant on its own: radiologist opens every patient's images
        store.audit(
            session, actor=actor, action=AuditAction.USER_ROLE_GRANTED, source=source, now=utcnow(),
            detail=f"{username}: {role}",
        )  # fmt: skip
    return user


def change_password(
    session: Session, username: str, password: str, actor: str, source: str = "", keep: str | None = None
) -> None:
    """Set a new password (12 characters or more) and end every session of the account but the
    one whose token hash is ``keep`` (the caller's own, when users change their own), audited."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise AccountError(f"no user {username!r}")
    user.password_hash = hash_password(password)
    ended = delete(ApiSession).where(ApiSession.user_id == user.id)
    if keep is not None:
        ended = ended.where(ApiSession.token_sha256 != keep)
    session.execute(ended)
    store.audit(
        session, actor=actor, action=AuditAction.USER_PASSWORD_CHANGED, source=source, now=utcnow(),
        detail=f"{username}; its other sessions ended",
    )  # fmt: skip


def deactivate_user(session: Session, username: str, actor: str, source: str = "") -> bool:
    """Disable an account and end its sessions; False when there is no such account.

    Raises:
        AccountError: it is the last active admin (nobody could manage accounts afterwards).
    """
    user = session.scalar(select(User).where(User.username == username).with_for_update())
    if user is None:
        return False
    if user.active and Role.ADMIN in user.role_set:
        admins = session.scalars(select(User).where(User.active.is_(True)).with_for_update()).all()
        if sum(Role.ADMIN in other.role_set for other in admins) <= 1:
            raise AccountError(f"{username} is the last active admin: make another admin first")
    user.active = False
    session.execute(delete(ApiSession).where(ApiSession.user_id == user.id))
    store.audit(
        session,
        actor=actor,
        action=AuditAction.USER_DEACTIVATED,
        source=source,
        now=utcnow(),
        detail=username,
    )
    return True


def active_accounts(session: Session) -> int:
    return int(session.scalar(select(func.count()).where(User.active.is_(True))) or 0)


def initial_password_file(home: Path) -> Path:
    """Where the first start keeps admin's random password, until admin first signs in."""
    return home / "initial-admin-password"


def bootstrap_admin(home: Path, database: Database) -> Path | None:
    """On a fresh install, create ``admin`` with a random password kept in a 0600 file under ``home``.

    Returns the file's path when an account was made (never logs the password itself).
    """
    with database.session() as session:
        if session.scalar(select(func.count()).select_from(User)):
            return None
        password = secrets.token_urlsafe(18)
        add_user(session, "admin", password, frozenset({Role.ADMIN}), actor="triage")
    path = initial_password_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(password + "\n")
    return path
