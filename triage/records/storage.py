"""Durable, atomic placement of received objects under the storage root.

An object is durable when its bytes are fsynced, it has been renamed to its final name, and the
directory holding that name is fsynced: only then may the listener answer success (PS3.4 B.2.2).
Paths kept anywhere else are storage keys relative to the root, so another machine that mounts the
same storage elsewhere can read them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

_CHUNK_BYTES = 1 << 20
# PS3.5 9.1: digits and dots, no leading zero in a component, at most 64 characters. Matched
# whole (``fullmatch``): ``re.match`` with ``$`` would let a trailing newline through.
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


def is_uid(value: str) -> bool:
    """True when ``value`` is a valid DICOM UID, exactly: no whitespace, no padding, no newline."""
    return len(value) <= 64 and _UID.fullmatch(value) is not None


def sha256_of(path: Path) -> str:
    """Return the SHA-256 of a file, read in chunks so memory does not grow with its size."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def instance_key(study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str) -> str:
    """Return ``<study>/<series>/<sop>.dcm``, refusing anything that is not a UID (no path tricks)."""
    for uid in (study_instance_uid, series_instance_uid, sop_instance_uid):
        if not is_uid(uid):
            raise ValueError(f"{uid!r} is not a DICOM UID and cannot name a stored file")
    return f"{study_instance_uid}/{series_instance_uid}/{sop_instance_uid}.dcm"


def quarantine_key(sop_instance_uid: str, sha256: str) -> str:
    """Return a unique key in quarantine for one received object."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    uid = sop_instance_uid if is_uid(sop_instance_uid) else "unknown"
    return f"{stamp}_{uid}_{sha256[:12]}.dcm"


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path``."""
    return shutil.disk_usage(path).free


def folder_bytes(folder: Path) -> int:
    """The bytes of every file under ``folder`` (0 when it does not exist)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except FileNotFoundError:  # removed while we walked
                continue
    return total


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_durable(source: Path, root: Path, key: str, after_sync: Callable[[], None] | None = None) -> Path:
    """Move a received file to ``root/key`` durably, replacing whatever lies there; return its path.

    A file already at ``key`` can only be an orphan of a store that crashed before its database
    row was committed (the caller checked), so it was never acknowledged and may be replaced.
    ``after_sync`` runs between the fsync and the rename (the acceptance suite's fault injection).
    """
    target = root / key
    new_dirs = []
    parent = target.parent
    while not parent.exists():
        new_dirs.append(parent)
        parent = parent.parent
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.stat().st_dev != target.parent.stat().st_dev:
        # Storage mounted apart from the incoming folder: copy beside the target first, so that
        # the final step is still an atomic rename within one filesystem.
        staged = target.with_name(f".{target.name}.partial")
        shutil.copyfile(source, staged)
        source.unlink()
        source = staged
    fd = os.open(source, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if after_sync is not None:
        after_sync()
    source.replace(target)
    fsync_directory(target.parent)
    for created in new_dirs:  # a new directory's own entry must reach its parent too
        fsync_directory(created.parent)
    return target
