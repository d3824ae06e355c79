"""The one reader of an instance triage stored: the worker, the API's image route, the duplicate
comparer and the label export all open stored images here, with the same guards.

- The storage key must resolve inside storage (a key from anywhere but the listener's own records
  reads nothing).
- The bytes read are the bytes received: their SHA-256 is checked against the row's, when given.
- A Deflated data set is inflated into a temporary file under ``scratch`` (TRIAGE_HOME: owner-only,
  like the images; never the shared /tmp), a chunk at a time, under ``MAX_INFLATED_BYTES``: pydicom
  would inflate it whole in memory, and a few kilobytes can inflate to gigabytes.

Pixel data is decoded by the caller, one frame at most where that is enough, after
``triage.imaging.check_decoded_size`` has checked the header.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import zlib
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import DeflatedExplicitVRLittleEndian

from triage.deflate import InflateRefused, inflate_to_file
from triage.imaging import MAX_DECODED_BYTES

# A Deflated instance inflates to at most its pixel data's cap and as much again for the rest.
MAX_INFLATED_BYTES = 2 * MAX_DECODED_BYTES


class StoredUnreadable(Exception):
    """This stored instance cannot be read as it is (gone, changed, outside storage, not DICOM, or
    inflating past the cap); the message says which, in a sentence with no patient data."""


class StorageUnavailable(Exception):
    """Storage could not be read just now (a shared filesystem hiccup); worth a bounded retry."""


def open_stored(
    storage_dir: Path,
    storage_key: str,
    sha256: str | None,
    scratch: Path,
    max_inflated_bytes: int = MAX_INFLATED_BYTES,
) -> Dataset:
    """The stored instance at ``storage_key``, checked against ``sha256`` (None: not checked).

    Raises:
        StoredUnreadable: the instance is gone, changed, outside storage or cannot be parsed.
        StorageUnavailable: storage failed to read the file (transient).
    """
    root = storage_dir.resolve()
    path = (root / storage_key).resolve()
    if not path.is_relative_to(root):
        raise StoredUnreadable("its storage key points outside storage")
    try:
        data = path.read_bytes()
    except FileNotFoundError as error:
        raise StoredUnreadable("it is missing from storage") from error
    except OSError as error:
        raise StorageUnavailable(f"storage could not be read: {type(error).__name__}") from error
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise StoredUnreadable("it changed on disk since it was received")
    try:
        return _parse(data, scratch, max_inflated_bytes)
    except InflateRefused as refused:
        raise StoredUnreadable(str(refused)) from refused
    except (InvalidDicomError, AttributeError, ValueError, EOFError, zlib.error) as error:
        raise StoredUnreadable(f"it cannot be parsed: {type(error).__name__}") from error


def _parse(data: bytes, scratch: Path, max_inflated_bytes: int) -> Dataset:
    """The bytes just checked, parsed (not read a second time)."""
    stream = io.BytesIO(data)
    read_preamble(stream, False)
    meta = _read_file_meta_info(stream)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        stream.seek(0)
        return dcmread(stream)
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".inflate-", dir=scratch) as folder:
        source, target = Path(folder) / "deflated.dcm", Path(folder) / "inflated.dcm"
        source.write_bytes(data)
        inflate_to_file(source, target, meta, max_inflated_bytes)
        return dcmread(target)
