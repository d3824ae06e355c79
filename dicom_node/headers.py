"""Reading a received object's header safely: what the C-STORE handler checks before it stores.

Bounded in memory and depth whatever is sent: large values stay deferred, Deflated data sets are
inflated into a file under a cap, sequences nest at most ``MAX_SEQUENCE_DEPTH``, and the key UIDs
are checked as sent. Each refusal is a ``Rejected`` with the DIMSE status to answer.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian

from dicom_node.status import Status
from triage.deflate import InflateRefused, inflate_to_file
from triage.records import storage

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
_KEY_UIDS = {
    Tag(keyword): keyword
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
}


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
            inflate_to_file(path, inflated, meta, max_bytes)
            ds = _read_checked(inflated)
        except InflateRefused as refused:
            raise Rejected(Status.CANNOT_UNDERSTAND, str(refused)) from refused
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
