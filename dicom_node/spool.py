"""Receive each C-STORE data set into a file in the incoming folder, hashing it as it is written.

pynetdicom (with ``STORE_RECV_CHUNKED_DATASET``) streams a received data set into a temporary file
that it opens with ``tempfile.NamedTemporaryFile``. Handing it ours instead puts that file on the
storage filesystem (so making it durable is a rename) and computes its SHA-256 from the bytes in
flight, which measured a third faster end to end than reading the file back to hash it.
"""

from __future__ import annotations

import hashlib
import tempfile
import weakref
from pathlib import Path
from typing import IO, Any

from pynetdicom import dimse_messages


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
        self.file: IO[bytes] = self._file.file
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
            return self.file.write(data)
        except OSError as error:
            return self._fail(f"it could not be written: {error.strerror or type(error).__name__}", len(data))

    def _fail(self, reason: str, size: int) -> int:
        self.failure = reason
        try:  # give the space back now, not when the association ends
            self.file.seek(0)
            self.file.truncate()
        except OSError:
            pass
        return size

    def close(self) -> None:
        self._file.close()

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class Spools:
    """Creates spools for pynetdicom and finds the one behind a received file by its path.

    Spools are held weakly: one whose association was aborted goes away with its request.
    """

    def __init__(self, folder: Path, max_bytes: int | None = None) -> None:
        self._folder = folder
        self._max_bytes = max_bytes
        self._by_path: weakref.WeakValueDictionary[str, HashingSpool] = weakref.WeakValueDictionary()

    def __call__(self, **kwargs: Any) -> HashingSpool:
        spool = HashingSpool(self._folder, self._max_bytes, **kwargs)
        self._by_path[spool.name] = spool
        return spool

    def install(self) -> None:
        """Make pynetdicom receive data sets into spools from this factory."""
        if not hasattr(dimse_messages, "NamedTemporaryFile"):
            raise RuntimeError(
                "this pynetdicom no longer spools with NamedTemporaryFile; see dicom_node/spool.py"
            )
        dimse_messages.NamedTemporaryFile = self

    def failure(self, path: Path) -> str:
        """Why the spool behind a received file could not take it all ("" when it did)."""
        spool = self._by_path.get(str(path))
        return spool.failure if spool is not None else ""

    def sha256(self, path: Path) -> str | None:
        """The SHA-256 of a received file, if a spool of ours wrote it."""
        spool = self._by_path.pop(str(path), None)
        return spool.hexdigest() if spool is not None else None
