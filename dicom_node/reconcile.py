"""Leftovers: files that a crash left where no row describes them. Run by the leading process only.

- ``incoming/<receiver>/``: partial receptions of a receiver that is gone (its lock is free). They
  were never acknowledged, so the sender still has them: removed. A live receiver's folder is
  never touched, however old its files.
- loose files in ``incoming/`` and ``results/incoming/`` (result staging), and ``.partial`` copies
  under ``storage/``: removed once older than the grace period, which is longer than any
  reception or write may pause.
- a durable file under ``storage/`` with no instance row: the crash came between the rename and
  the commit, so it was never acknowledged either. It is not adopted (its sender was told to send
  it again and will); it moves to ``quarantine/`` with a row saying so, so nothing is lost.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from dicom_node.spool import remove_if_abandoned
from triage.records import storage, store
from triage.records.db import Database, utcnow
from triage.records.store import ORPHAN_REASON
from triage.records.tables import Instance

logger = logging.getLogger(__name__)

_KEYS_PER_QUERY = 500
_FOLDERS_PER_STEP = 100


@dataclass(frozen=True)
class Reconciled:
    """What one pass found and did, for logs and tests."""

    receptions: int = 0  # abandoned receiver folders and loose partial files removed
    staging: int = 0  # result staging files removed
    orphans: int = 0  # stored files without a row, moved to quarantine


class Reconciler:
    """Finds and settles leftovers under ``TRIAGE_HOME``."""

    def __init__(
        self,
        database: Database,
        folders: tuple[Path, Path, Path, Path],
        grace_seconds: float,
    ) -> None:
        self._database = database
        self._incoming, self._storage, self._quarantine, self._results = folders
        self._grace = grace_seconds
        self._walk: Any = None  # os.scandir's iterator (its type is not public), kept between steps

    def _old(self, path: Path) -> bool:
        try:
            return time.time() - path.stat().st_mtime > self._grace
        except FileNotFoundError:
            return False

    def receptions(self) -> int:
        """Remove abandoned receptions; cheap enough for every pass of the monitor."""
        removed = 0
        for entry in self._incoming.iterdir() if self._incoming.is_dir() else ():
            if entry.is_dir() and not entry.name.startswith("."):
                removed += remove_if_abandoned(entry)
            elif entry.is_dir() and self._old(entry):  # a receiver that died while it was starting
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
            elif entry.is_file() and self._old(entry):
                entry.unlink(missing_ok=True)
                removed += 1
        if removed:
            logger.info("removed %d abandoned reception(s) from incoming/", removed)
        return removed

    def staging(self) -> int:
        removed = 0
        staging_dir = self._results / "incoming"
        for entry in staging_dir.iterdir() if staging_dir.is_dir() else ():
            if entry.is_file() and self._old(entry):
                entry.unlink(missing_ok=True)
                removed += 1
        if removed:
            logger.info("removed %d stale result staging file(s)", removed)
        return removed

    def orphans(self) -> int:
        """Quarantine stored files that no instance row names: a whole walk of storage at once (the
        CLI and tests; the leader walks in steps, ``orphans_step``)."""
        moved = 0
        while True:
            step, done = self.orphans_step(_FOLDERS_PER_STEP)
            moved += step
            if done:
                return moved

    def orphans_step(self, folders: int) -> tuple[int, bool]:
        """Walk the next ``folders`` study folders of storage; returns how many files were moved to
        quarantine and whether the walk reached the end (the next step starts a new one).

        Storage is walked a few folders at a time, from a directory iterator kept between steps, so
        that neither memory nor the time of one step grows with storage: at about 41 µs a file, one
        walk of two million files takes some 80 s."""
        if self._walk is None:
            if not self._storage.is_dir():
                return 0, True
            self._walk = os.scandir(self._storage)
        candidates: list[tuple[str, Path]] = []
        for taken, entry in enumerate(self._walk, start=1):
            paths = Path(entry.path).rglob("*") if entry.is_dir(follow_symlinks=False) else [Path(entry.path)]
            candidates.extend(self._candidates(paths))
            if taken >= folders:
                return self._quarantine_unknown(candidates), False
        self._walk.close()
        self._walk = None
        return self._quarantine_unknown(candidates), True

    def _candidates(self, paths: Iterable[Path]) -> list[tuple[str, Path]]:
        found = []
        for path in paths:
            if not path.is_file() or not self._old(path):
                continue
            if path.name.endswith(".partial"):  # a cross-device copy that never got its rename
                path.unlink(missing_ok=True)
                continue
            found.append((path.relative_to(self._storage).as_posix(), path))
        return found

    def _quarantine_unknown(self, candidates: list[tuple[str, Path]]) -> int:
        moved = 0
        for start in range(0, len(candidates), _KEYS_PER_QUERY):
            chunk = dict(candidates[start : start + _KEYS_PER_QUERY])
            with self._database.reading() as session:
                known = set(
                    session.scalars(select(Instance.storage_key).where(Instance.storage_key.in_(chunk)))
                )
            for key, path in chunk.items():
                if key not in known:
                    moved += self._quarantine_orphan(key, path)
        if moved:
            logger.warning("moved %d stored file(s) without a database row to quarantine", moved)
        return moved

    def _quarantine_orphan(self, key: str, path: Path) -> bool:
        sha256 = storage.sha256_of(path)
        sop_instance_uid = Path(key).stem
        target = storage.quarantine_key(sop_instance_uid, sha256)
        storage.make_durable(path, self._quarantine, target)
        with self._database.session() as session:
            if session.scalar(select(Instance.id).where(Instance.storage_key == key)) is not None:
                # Its store committed after all (a stalled transaction): the file goes back.
                storage.make_durable(self._quarantine / target, self._storage, key)
                return False
            store.add_quarantined(
                session,
                storage_key=target,
                sha256=sha256,
                calling_ae_title="",
                reason=ORPHAN_REASON,
                now=utcnow(),
                sop_instance_uid=sop_instance_uid[:64],
                study_instance_uid=key.split("/", 1)[0][:64],
            )
        return True

    def run(self) -> Reconciled:
        return Reconciled(self.receptions(), self.staging(), self.orphans())
