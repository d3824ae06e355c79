"""Disk pressure at the DICOM edge: refuse to take what cannot be made durable, before writing it.

Below the free-space watermark (``storage_min_free_bytes``) the listener rejects new associations
as transient (A-ASSOCIATE-RJ, "temporary congestion") and answers C-STOREs on open associations
with 0xA700 (Out of Resources), so a sender keeps its instances and retries later; nothing answered
Success is lost. Quarantine has a quota of its own, so a flood of bad objects cannot fill the disk
that good ones need: past it, a refused object still gets its failure status but is not kept.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from pynetdicom.events import Event

from triage.records import storage

logger = logging.getLogger(__name__)

# A-ASSOCIATE-RJ: rejected-transient, by the service provider (presentation), temporary congestion.
TRANSIENT_CONGESTION = (0x02, 0x03, 0x01)


class DiskGuard:
    """Whether storage has room for one more instance, and whether quarantine may keep another."""

    def __init__(
        self, storage_dir: Path, min_free_bytes: int, quarantine_dir: Path, quota_bytes: int
    ) -> None:
        self._storage_dir = storage_dir
        self._min_free = min_free_bytes
        self._quarantine_dir = quarantine_dir
        self._quota = quota_bytes
        self._lock = threading.Lock()
        self._quarantine_used: int | None = None  # counted once, then kept up to date
        self._warned_at = 0.0

    def free_bytes(self) -> int:
        return storage.free_bytes(self._storage_dir)

    def low(self) -> bool:
        """Whether free space is below the watermark (logged at most once a minute)."""
        free = self.free_bytes()
        if free >= self._min_free:
            return False
        now = time.monotonic()
        if now - self._warned_at > 60:
            self._warned_at = now
            logger.error(
                "storage degraded: %d MiB free, below the %d MiB watermark; refusing new instances",
                free >> 20,
                self._min_free >> 20,
            )
        return True

    def on_requested(self, event: Event) -> None:
        """EVT_REQUESTED: reject the association as transient while storage is low."""
        if self.low():
            request = event.assoc.requestor.primitive
            calling = str(request.calling_ae_title).strip() if request is not None else "?"
            event.assoc.acse.send_reject(*TRANSIENT_CONGESTION)
            event.assoc.kill()  # as pynetdicom does for its own rejections: the reject is sent first
            logger.warning("association from %s rejected (transient): storage below its watermark", calling)

    def quarantine_may_keep(self, size_bytes: int) -> bool:
        """Reserve room in quarantine for one object; False (logged) when the quota is spent."""
        with self._lock:
            if self._quarantine_used is None:
                self._quarantine_used = storage.folder_bytes(self._quarantine_dir)
            if self._quarantine_used + size_bytes > self._quota:
                logger.error(
                    "quarantine quota of %d MiB spent: a refused object was answered but not kept",
                    self._quota >> 20,
                )
                return False
            self._quarantine_used += size_bytes
            return True
