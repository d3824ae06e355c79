"""C-ECHO and C-STORE handlers: make each instance durable, record it, answer a named status.

The handler never waits on inference or the broker; it writes one file and one transaction.
Success is answered only when the instance is fsynced under its final name and its row is
committed; otherwise a failure status tells the sender to keep the instance and retry.
"""

from __future__ import annotations

import copy
import logging
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from pydicom import Dataset, dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomFileLike
from pydicom.filereader import read_file_meta_info
from pydicom.filewriter import write_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from sqlalchemy.exc import SQLAlchemyError

from dicom_node.capacity import DiskGuard
from dicom_node.spool import ReceiverFolder, Spools
from dicom_node.status import Status
from triage.imaging import header_facts
from triage.logs import correlation_id
from triage.records import conflicts, queries, storage, store
from triage.records.db import Database

logger = logging.getLogger(__name__)

# What pydicom raises for a byte stream that is not a DICOM data set it can parse.
_UNPARSEABLE = (
    InvalidDicomError,
    ValueError,
    EOFError,
    struct.error,
    KeyError,
    TypeError,
    OverflowError,
    NotImplementedError,
    zlib.error,
    RecursionError,  # sequences nested past the reader's recursion: a poison object, not "retry later"
)

# Sequences nested deeper than this are refused. A TID 1500 report nests about ten levels; anything
# near the interpreter's recursion limit is built to break a reader, and every later reader of the
# stored file (the worker, the API, an export) would meet it again.
MAX_SEQUENCE_DEPTH = 32
# Values longer than this stay unread while the header is checked (an encapsulated document, a
# waveform, a private OB): their length is known, their bytes are never loaded into memory.
_DEFER_BYTES = 64 * 1024
_CHUNK_BYTES = 1 << 20
_KEY_UIDS = {
    Tag(keyword): keyword
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
}

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


class Rejected(Exception):
    """A received object that cannot be stored as an instance; it goes to quarantine."""

    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.study_instance_uid = ""  # the study it names, when its header could be read


def read_header(path: Path, max_bytes: int | None = None) -> Dataset:
    """Parse every element before the pixel data, so a malformed header fails here, not later.

    Large values are left deferred (never read), and sequences nest at most ``MAX_SEQUENCE_DEPTH``.
    A Deflated data set is inflated into a file beside it, at most ``max_bytes``, and read from
    there: pydicom would inflate it whole in memory (PS3.5 A.5), so a few kilobytes could cost
    gigabytes. The returned header keeps the transfer syntax the instance was sent in.

    Raises:
        Rejected: the data set cannot be parsed, nests too deep, or inflates past ``max_bytes``
            (CANNOT_UNDERSTAND).
    """
    try:
        meta = read_file_meta_info(path)
        if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
            return _read_checked(path)
        inflated = path.with_name(path.name + ".inflated")
        try:
            _inflate(path, inflated, meta, max_bytes)
            ds = _read_checked(inflated)
        finally:
            inflated.unlink(missing_ok=True)
        ds.file_meta = meta
        return ds
    except _UNPARSEABLE as error:
        raise Rejected(
            Status.CANNOT_UNDERSTAND, f"the data set cannot be parsed: {type(error).__name__}"
        ) from error


def _read_checked(path: Path) -> Dataset:
    ds = dcmread(path, stop_before_pixels=True, defer_size=_DEFER_BYTES)
    _parse_values(ds, 0)
    return ds


def _inflate(source: Path, target: Path, meta: FileMetaDataset, max_bytes: int | None) -> None:
    """Write ``source``'s Deflated data set to ``target`` as Explicit VR Little Endian, in chunks."""
    with source.open("rb") as stream:
        head = stream.read(144)  # preamble, "DICM", then (0002,0000) File Meta Group Length (Type 1)
        if len(head) < 144 or head[128:132] != b"DICM" or head[132:136] != b"\x02\x00\x00\x00":
            raise Rejected(Status.CANNOT_UNDERSTAND, "a Deflated file meta without its group length")
        stream.seek(144 + int.from_bytes(head[140:144], "little"))
        explicit = copy.deepcopy(meta)  # FileMetaDataset(meta) would share its elements
        explicit.TransferSyntaxUID = ExplicitVRLittleEndian
        inflater, written = zlib.decompressobj(-zlib.MAX_WBITS), 0
        with target.open("wb") as out:
            out.write(b"\0" * 128 + b"DICM")
            meta_out = DicomFileLike(out)
            meta_out.is_little_endian, meta_out.is_implicit_VR = True, False
            write_file_meta_info(meta_out, explicit, enforce_standard=False)
            while not inflater.eof:
                compressed = inflater.unconsumed_tail or stream.read(_CHUNK_BYTES)
                if not compressed:
                    break  # a truncated stream: the reader says what is missing
                data = inflater.decompress(compressed, _CHUNK_BYTES)  # at most a chunk at a time
                written += len(data)
                if max_bytes is not None and written > max_bytes:
                    raise Rejected(
                        Status.CANNOT_UNDERSTAND,
                        f"the Deflated data set inflates past the {max_bytes} bytes an instance may have",
                    )
                out.write(data)


def _raw_uid_ok(raw: RawDataElement) -> bool:
    """A key UID exactly as sent: pydicom strips whitespace when it converts one, so a UID with a
    trailing newline would pass every later check. NUL is UI's padding (PS3.5 6.2); a single space
    making the length even is tolerated, as many modalities pad so; anything else is refused."""
    value = bytes(raw.value or b"")
    if len(value) % 2 == 0 and value[-1:] in (b"\0", b" "):
        value = value[:-1]
    return storage.is_uid(value.decode("ascii", "replace"))


def _parse_values(ds: Dataset, depth: int) -> None:
    """Convert every value that was read (deferred ones stay unread), descending into sequences."""
    if depth > MAX_SEQUENCE_DEPTH:
        raise Rejected(Status.CANNOT_UNDERSTAND, f"sequences nest deeper than {MAX_SEQUENCE_DEPTH} levels")
    malformed: list[str] = []
    for tag in list(ds.keys()):
        raw = ds.get_item(tag, keep_deferred=True)
        if isinstance(raw, RawDataElement) and raw.value is None:
            continue  # deferred: its bytes are on disk and stay there
        if depth == 0 and tag in _KEY_UIDS and isinstance(raw, RawDataElement) and not _raw_uid_ok(raw):
            malformed.append(_KEY_UIDS[tag])
        element = ds[tag]
        if element.VR == "SQ":
            for item in element.value:
                _parse_values(item, depth + 1)
    if malformed:
        rejected = Rejected(
            Status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS, f"{malformed[0]} is missing or not a valid UID"
        )
        if "StudyInstanceUID" not in malformed:  # its study still learns that an image was refused
            study_uid = str(ds.get("StudyInstanceUID", ""))
            rejected.study_instance_uid = study_uid if storage.is_uid(study_uid) else ""
        raise rejected


def check_identity(ds: Dataset, sop_class_uid: str, sop_instance_uid: str) -> None:
    """Check the data set is the instance the C-STORE request announced (PS3.4 B.2.3).

    Raises:
        Rejected: CANNOT_UNDERSTAND when the bytes parse to no instance at all, otherwise
            DATA_SET_DOES_NOT_MATCH_SOP_CLASS naming the attribute at fault.
    """
    if "SOPClassUID" not in ds and "SOPInstanceUID" not in ds:
        raise Rejected(
            Status.CANNOT_UNDERSTAND, "the data set has neither SOP Class UID nor SOP Instance UID"
        )
    for keyword, announced in (
        ("SOPClassUID", sop_class_uid),
        ("SOPInstanceUID", sop_instance_uid),
    ):
        if str(ds.get(keyword, "")) != announced:
            raise Rejected(
                Status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                f"{keyword} differs from the C-STORE request",
            )
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        value = str(ds.get(keyword, ""))
        if not storage.is_uid(value):
            raise Rejected(
                Status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS, f"{keyword} is missing or not a valid UID"
            )


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
        self, database: Database, paths: StoragePaths, guard: DiskGuard, max_instance_bytes: int | None = None
    ) -> None:
        self._database = database
        self._paths = paths
        self.guard = guard
        self._locks = _UidLocks()
        self.receiving = ReceiverFolder(paths.incoming_dir)
        self.spools = Spools(self.receiving.path, max_instance_bytes)

    def on_echo(self, event: Event) -> int:
        """Answer C-ECHO (PS3.4 A.4): the node is up."""
        return int(Status.SUCCESS)

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
        if existing_sha256 == received.sha256:
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
        storage.make_durable(path, self._paths.storage_dir, received.storage_key)
        with self._database.session() as session:
            store.add_instance(session, received, now)
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
