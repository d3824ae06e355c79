"""Receive each C-STORE data set into a file in the incoming folder, hashing it as it is written.

pynetdicom (with ``STORE_RECV_CHUNKED_DATASET``) streams a received data set into a temporary file
that it opens with ``tempfile.NamedTemporaryFile``. Handing it ours instead puts that file on the
storage filesystem (so making it durable is a rename) and computes its SHA-256 from the bytes in
flight, which measured a third faster end to end than reading the file back to hash it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import socket
import tempfile
import threading
import uuid
from pathlib import Path
from typing import IO, Any

from pynetdicom import dimse_messages

# The file a receiver holds locked (flock) for as long as it receives into its folder.
LOCK_NAME = ".receiving"
_FACTORY = "NamedTemporaryFile"  # what pynetdicom calls to open the file a data set streams into


class ReceiverFolder:
    """This process's own folder under ``incoming/``, locked while it receives.

    Receivers may be several over one ``TRIAGE_HOME``; whoever recovers removes a folder only
    when it can take its lock, that is when the process that received into it is gone, so no
    one ever deletes another receiver's in-flight files.
    """

    def __init__(self, incoming_dir: Path) -> None:
        host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:40]
        name = f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # Made under a hidden name and locked before it gets its own, so that nobody ever finds
        # it unlocked (recovery leaves hidden folders to the age rule).
        making = incoming_dir / f".{name}"
        making.mkdir(parents=True)
        self._fd = os.open(making / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self.path = making.rename(incoming_dir / name)

    def partial_files(self) -> list[Path]:
        """Files being received (or left by a reception that failed), the lock file aside."""
        return [path for path in self.path.iterdir() if path.name != LOCK_NAME]

    def close(self) -> None:
        """Stop receiving here: the folder goes (what is in it was never acknowledged)."""
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._fd)


def remove_if_abandoned(folder: Path) -> bool:
    """Remove a receiver's folder whose process is gone (its lock is free); True if removed."""
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDWR)
    except FileNotFoundError:  # being created, or already removed
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live receiver
        shutil.rmtree(folder, ignore_errors=True)
        return True
    finally:
        os.close(fd)


class HashingSpool:
    """A named temporary file that keeps the SHA-256 of everything written to it.

    A write that fails (the disk is full) or would pass ``max_bytes`` does not raise: pynetdicom
    would lose the association's thread. The spool empties itself, takes no more bytes and says
    why in ``failure``, so that the handler answers Out of Resources and the sender keeps the
    instance.
    """

    def __init__(self, folder: Path, max_bytes: int | None = None, **kwargs: Any) -> None:
        self._file = tempfile.NamedTemporaryFile(dir=folder, **kwargs)  # noqa: SIM115 - closed by pynetdicom
        self.name: str = self._file.name
        # pynetdicom spools in the association's DUL thread: the association this spool belongs to.
        self.owner = threading.current_thread()
        self.claimed = False  # a handler has it: the association's end leaves it to the handler
        self._raw: IO[bytes] = self._file.file
        # pynetdicom flushes ``spool.file`` itself after each fragment: a full disk surfaces there
        # (the buffered write succeeded), so that flush must not raise either.
        self.file = _FlushGuard(self)
        self._digest = hashlib.sha256()
        self._max_bytes = max_bytes
        self._written = 0
        self.failure = ""

    def write(self, data: bytes) -> int:
        if self.failure:
            return len(data)
        self._written += len(data)
        if self._max_bytes is not None and self._written > self._max_bytes:
            limit = f"{self._max_bytes >> 20} MiB"
            return self._fail(f"the instance is larger than the {limit} accepted", len(data))
        try:
            self._digest.update(data)
            return self._raw.write(data)
        except OSError as error:
            return self._fail(f"it could not be written: {error.strerror or type(error).__name__}", len(data))

    def _fail(self, reason: str, size: int) -> int:
        self.failure = reason
        try:  # give the space back now, not when the association ends
            self._raw.seek(0)
            self._raw.truncate()
        except OSError:
            pass
        return size

    def flush(self) -> None:
        if self.failure:
            return
        try:
            self._raw.flush()
        except OSError as error:
            self._fail(f"it could not be written: {error.strerror or type(error).__name__}", 0)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # what a full disk left in the buffer is given up
            self._file.close()

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class _FlushGuard:
    """``spool.file`` as pynetdicom uses it (``flush`` only), going through the spool's guard."""

    def __init__(self, spool: HashingSpool) -> None:
        self._spool = spool

    def flush(self) -> None:
        self._spool.flush()


class Spools:
    """Creates spools for pynetdicom and finds the one behind a received file by its path.

    A spool is forgotten when its handler takes its hash, or when its association ends: pynetdicom
    creates the file with ``delete=False`` and removes it only after a handler ran, so a transfer
    cut off mid-way would leave its partial file in the folder until the listener stops; an allowed
    caller could fill the disk that way, an aborted transfer at a time.
    """

    def __init__(self, folder: Path, max_bytes: int | None = None) -> None:
        self._folder = folder
        self.max_bytes = max_bytes
        self._by_path: dict[str, HashingSpool] = {}
        self._lock = threading.Lock()
        self._previous: Any = None
        self._stopped = False

    def __call__(self, **kwargs: Any) -> HashingSpool:
        spool = HashingSpool(self._folder, self.max_bytes, **kwargs)
        with self._lock:
            self._by_path[spool.name] = spool
        return spool

    def discard(self, owner: threading.Thread) -> int:
        """Remove the files of ``owner``'s spools no handler took (its association ended); returns
        how many there were. A file a handler already moved into storage is not there any more."""
        with self._lock:
            left = [n for n, spool in self._by_path.items() if spool.owner is owner and not spool.claimed]
            spools = [self._by_path.pop(name) for name in left]
        for spool in spools:
            spool.close()
            Path(spool.name).unlink(missing_ok=True)
        return len(spools)

    def install(self) -> None:
        """Make pynetdicom receive data sets into spools from this factory."""
        if not hasattr(dimse_messages, "NamedTemporaryFile"):
            raise RuntimeError(
                "this pynetdicom no longer spools with NamedTemporaryFile; see dicom_node/spool.py"
            )
        self._previous = dimse_messages.NamedTemporaryFile
        dimse_messages.NamedTemporaryFile = self

    def uninstall(self) -> None:
        """Give pynetdicom back the spool factory it had before, passing over any whose listener
        stopped too (this one's folder goes with its listener)."""
        self._stopped = True
        if getattr(dimse_messages, _FACTORY) is self:
            previous = self._previous
            while isinstance(previous, Spools) and previous._stopped:
                previous = previous._previous
            setattr(dimse_messages, _FACTORY, previous)

    def claim(self, path: Path) -> bool:
        """A handler takes the received file at ``path``; False if it is gone (its association
        ended and took it first, so nobody will hear the answer)."""
        with self._lock:
            spool = self._by_path.get(str(path))
            if spool is not None:
                spool.claimed = True
        return path.exists()

    def failure(self, path: Path) -> str:
        """Why the spool behind a received file could not take it all ("" when it did)."""
        with self._lock:
            spool = self._by_path.get(str(path))
        return spool.failure if spool is not None else ""

    def sha256(self, path: Path) -> str | None:
        """The SHA-256 of a received file, if a spool of ours wrote it."""
        with self._lock:
            spool = self._by_path.pop(str(path), None)
        return spool.hexdigest() if spool is not None else None
