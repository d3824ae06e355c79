"""C-ECHO and C-STORE handlers: make each instance durable, record it, answer a named status.

The handler never waits on inference or the broker; it writes one file and one transaction.
Success is answered only when the instance is fsynced under its final name and its row is
committed; otherwise a failure status tells the sender to keep the instance and retry.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from pydicom import Dataset
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from sqlalchemy.exc import SQLAlchemyError

from dicom_node.capacity import DiskGuard
from dicom_node.headers import Rejected, check_identity, read_header
from dicom_node.spool import ReceiverFolder, Spools
from dicom_node.status import Status
from triage.header_facts import header_facts
from triage.logs import correlation_id
from triage.records import conflicts, queries, storage, store
from triage.records.db import Database

logger = logging.getLogger(__name__)

_PATIENT_FIELDS = {  # keyword -> (column, maximum length)
    "PatientID": ("patient_id", 64),
    "IssuerOfPatientID": ("issuer_of_patient_id", 64),
    "PatientName": ("patient_name", 324),
    "PatientBirthDate": ("patient_birth_date", 8),
    "AccessionNumber": ("accession_number", 16),
    "StudyDate": ("study_date", 8),
    "StudyDescription": ("study_description", 64),
}


@dataclass(frozen=True)
class StoragePaths:
    """Where durable instances and quarantined objects go."""

    storage_dir: Path
    quarantine_dir: Path
    incoming_dir: Path


class _UidLocks:
    """Serialises stores of the same SOP Instance UID arriving on concurrent associations."""

    def __init__(self, stripes: int = 64) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]

    def __call__(self, uid: str) -> threading.Lock:
        return self._locks[hash(uid) % len(self._locks)]


def describe(ds: Dataset, *, sha256: str, size_bytes: int, calling: str, peer: str) -> store.ReceivedInstance:
    """Describe a checked data set as the database records it."""
    return store.ReceivedInstance(
        study_instance_uid=str(ds.StudyInstanceUID),
        series_instance_uid=str(ds.SeriesInstanceUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        storage_key=storage.instance_key(
            str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
        ),
        sha256=sha256,
        size_bytes=size_bytes,
        calling_ae_title=calling,
        peer_address=peer,
        patient={
            column: str(ds.get(keyword, ""))[:size] for keyword, (column, size) in _PATIENT_FIELDS.items()
        },
        facts=header_facts(ds),
    )


class StorageHandlers:
    """The bound C-ECHO and C-STORE handlers of the listener."""

    def __init__(
        self,
        database: Database,
        paths: StoragePaths,
        guard: DiskGuard,
        max_instance_bytes: int | None = None,
        fault_kill_at: str = "",
    ) -> None:
        self._database = database
        self._fault_kill_at = fault_kill_at
        self._paths = paths
        self.guard = guard
        self._locks = _UidLocks()
        self.receiving = ReceiverFolder(paths.incoming_dir)
        self.spools = Spools(self.receiving.path, max_instance_bytes)

    def on_echo(self, event: Event) -> int:
        """Answer C-ECHO (PS3.4 A.4): the node is up."""
        return int(Status.SUCCESS)

    def on_closed(self, event: Event) -> None:
        """An association's connection closed (released, aborted or dropped): remove what it was
        still sending, which was never acknowledged."""
        removed = self.spools.discard(event.assoc.dul)
        if removed:
            logger.info("an association ended mid-transfer: %d partial file(s) removed", removed)

    def on_store(self, event: Event) -> int:
        """Answer C-STORE; any unexpected error becomes PROCESSING_FAILURE, logged once."""
        correlation_id.set(f"assoc-{id(event.assoc):x}")
        try:
            status = self._store(event)
        except Exception:  # process boundary: the association must survive a bug in one store
            logger.exception("C-STORE failed unexpectedly; answered PROCESSING_FAILURE")
            status = Status.PROCESSING_FAILURE
        return int(status)

    def _store(self, event: Event) -> Status:
        path: Path = event.dataset_path
        request = cast(C_STORE, event.request)
        calling = str(event.assoc.requestor.ae_title).strip()
        peer = f"{event.assoc.requestor.address}:{event.assoc.requestor.port}"
        sop_instance_uid = str(request.AffectedSOPInstanceUID)
        if not self.spools.claim(path):
            logger.info("instance %s: its association ended before it was handled", sop_instance_uid)
            return Status.OUT_OF_RESOURCES  # never acknowledged: the sender still has it
        if failure := self.spools.failure(path):  # too large, or the disk filled while it came
            self.spools.sha256(path)
            logger.error("instance %s from %s refused: %s", sop_instance_uid, calling, failure)
            return Status.OUT_OF_RESOURCES
        if self.guard.low():  # before anything is made durable; the sender keeps it and retries
            return Status.OUT_OF_RESOURCES
        try:
            ds = read_header(path, self.spools.max_bytes)
        except Rejected as rejected:
            return self._quarantine_rejected(path, (calling, peer), sop_instance_uid, rejected)
        try:
            check_identity(ds, str(request.AffectedSOPClassUID), sop_instance_uid)
        except Rejected as rejected:
            study_uid = str(ds.get("StudyInstanceUID", ""))
            rejected.study_instance_uid = study_uid if storage.is_uid(study_uid) else ""
            return self._quarantine_rejected(path, (calling, peer), sop_instance_uid, rejected)
        try:
            with self._locks(sop_instance_uid):
                return self._persist(path, ds, calling, peer)
        except (OSError, SQLAlchemyError) as error:
            logger.error("could not persist instance %s: %s", sop_instance_uid, type(error).__name__)
            return Status.OUT_OF_RESOURCES

    def _persist(self, path: Path, ds: Dataset, calling: str, peer: str) -> Status:
        received = describe(
            ds,
            sha256=self._sha256(path),
            size_bytes=path.stat().st_size,
            calling=calling,
            peer=peer,
        )
        with self._database.session() as session:
            existing = queries.find_instance(session, received.sop_instance_uid)
            existing_sha256 = existing.sha256 if existing else None
            removed = existing is not None and existing.removed_at is not None
        if existing_sha256 == received.sha256:
            if removed:  # retention removed it: the same bytes sent again bring the original back
                return self._restore(path, received)
            logger.info(
                "instance %s received again with the same content; kept as is",
                received.sop_instance_uid,
            )
            return Status.SUCCESS
        now = self._database.now()
        if existing_sha256 is not None:
            if not self.guard.quarantine_may_keep(received.size_bytes):
                return Status.OUT_OF_RESOURCES  # a conflict we cannot keep is not acknowledged
            key = storage.quarantine_key(received.sop_instance_uid, received.sha256)
            storage.make_durable(path, self._paths.quarantine_dir, key)
            with self._database.session() as session:
                conflicts.flag_conflict(session, received, key, now)
            logger.warning(
                "instance %s conflicts with the stored one; quarantined as %s",
                received.sop_instance_uid,
                key,
            )
            return Status.SUCCESS
        self._fault("received")
        storage.make_durable(
            path, self._paths.storage_dir, received.storage_key, lambda: self._fault("synced")
        )
        self._fault("stored")
        with self._database.session() as session:
            store.add_instance(session, received, now)
        self._fault("committed")
        return Status.SUCCESS

    def _fault(self, step: str) -> None:
        """Fault injection for the acceptance suite (``fault_kill_listener_at``, off by default):
        the listener dies here, as at a power cut, before it answers."""
        if self._fault_kill_at == step:
            logger.error("fault injection: the listener kills itself %s", step)
            os.kill(os.getpid(), signal.SIGKILL)

    def _restore(self, path: Path, received: store.ReceivedInstance) -> Status:
        """Put a removed original back where its row says, from a re-send of the same bytes."""
        with self._database.session() as session:
            instance = queries.find_instance(session, received.sop_instance_uid)
            assert instance is not None
            storage.make_durable(path, self._paths.storage_dir, instance.storage_key)
            store.restore_original(session, instance, received, self._database.now())
        logger.info("instance %s, removed by retention, restored from a re-send", received.sop_instance_uid)
        return Status.SUCCESS

    def _sha256(self, path: Path) -> str:
        """The file's SHA-256, computed while it was received, or now if it was not."""
        return self.spools.sha256(path) or storage.sha256_of(path)

    def _quarantine_rejected(
        self, path: Path, sender: tuple[str, str], sop_instance_uid: str, rejected: Rejected
    ) -> Status:
        """Keep a rejected object for inspection (within the quarantine quota) and answer its failure
        status; the study it names (when its header could be read) goes down the conservative path."""
        calling = sender[0]
        sha256 = self._sha256(path)
        key = storage.quarantine_key(sop_instance_uid, sha256)
        keep = self.guard.quarantine_may_keep(path.stat().st_size)
        try:
            if keep:
                storage.make_durable(path, self._paths.quarantine_dir, key)
            with self._database.session() as session:
                now = self._database.now()
                if keep:
                    store.add_quarantined(
                        session,
                        storage_key=key,
                        sha256=sha256,
                        calling_ae_title=calling,
                        reason=rejected.reason,
                        now=now,
                        sop_instance_uid=sop_instance_uid[:64],
                        study_instance_uid=rejected.study_instance_uid,
                    )
                if rejected.study_instance_uid:
                    conflicts.flag_refused(session, rejected.study_instance_uid, sender, rejected.reason, now)
        except (OSError, SQLAlchemyError) as error:
            logger.error("could not quarantine a rejected object: %s", type(error).__name__)
        logger.warning("rejected instance %s from %s: %s", sop_instance_uid, calling, rejected.reason)
        return rejected.status
