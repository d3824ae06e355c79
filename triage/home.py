"""TRIAGE_HOME holds patients' images, the SQLite database and result files: only the service's
user (and, when configured, one group) may read it, and nobody else may write where it lives.

Checked and tightened by every process at start. The folder itself is made 0700 (or 2750 with
``home_group``): without search permission on it, nobody else reaches any file inside, however
old files below were created, so no walk over millions of stored images is needed. The process
umask makes what is written from now on owner-only (or group-readable).
"""

from __future__ import annotations

import contextlib
import grp
import os
import secrets
import stat
from pathlib import Path


class InsecureHome(Exception):
    """TRIAGE_HOME (or a folder above it) can be written by others, or belongs to another user."""


def _check_ancestors(home: Path) -> None:
    """A folder above home that others may write (without the sticky bit) lets them swap home."""
    for folder in home.parents:
        mode = folder.stat().st_mode
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            raise InsecureHome(f"{folder} (above TRIAGE_HOME) can be written by anyone; move TRIAGE_HOME")


def secure_home(home: Path, group: str | None = None) -> Path:
    """Create or check ``home`` and tighten it; returns its resolved path.

    Raises:
        InsecureHome: home belongs to another user, or others may write it or a folder above it.
        KeyError: ``group`` is not a group of this host.
    """
    home = home.resolve()
    _check_ancestors(home)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = home.stat()
    if info.st_uid != os.geteuid():
        raise InsecureHome(f"TRIAGE_HOME {home} belongs to uid {info.st_uid}, not to this process's user")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise InsecureHome(
            f"TRIAGE_HOME {home} can be written by others (mode {stat.filemode(info.st_mode)}); "
            f"run: chmod go-w {home}"
        )
    if group is None:
        os.umask(0o077)
        home.chmod(0o700)
    else:
        gid = grp.getgrnam(group).gr_gid
        os.umask(0o027)
        os.chown(home, -1, gid)
        home.chmod(0o2750)  # setgid: what is created inside belongs to the group too
    for name in ("triage.db", "triage.db-wal", "triage.db-shm"):
        database = home / name
        if database.exists():
            database.chmod(0o600 if group is None else 0o640)
    return home


def secret_file(home: Path, name: str, size_bytes: int) -> bytes:
    """A random secret kept at ``home / name``, made on first use, readable by the service user only.

    Made whole or not at all: written to a temporary file, synced, then linked into place (a link
    never replaces a secret another process made first, so every process of one home shares it); a
    crash leaves no empty or partial file that a later start would take."""
    path = home / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(size_bytes))
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
                os.link(temporary, path)
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        finally:
            temporary.unlink(missing_ok=True)
    return path.read_bytes()
