"""Read a study version's instances from storage into model inputs, checking each file's hash."""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from inference.transforms import ImageMeta, Prepared, UnreadableImage, prepare, read_dicom
from triage.messages import AnalyseStudy, InstanceRef

# Decoding, hashing and resizing release the GIL for most of their time: read a study's images at once.
_READERS = max(1, min(4, os.cpu_count() or 1))


class StorageUnavailable(Exception):
    """Storage could not be read just now (a shared filesystem hiccup); worth a bounded retry."""


@dataclass(frozen=True)
class ReadImage:
    ref: InstanceRef
    meta: ImageMeta
    prepared: Prepared


def read_study(payload: AnalyseStudy, storage_dir: Path, size: int) -> list[ReadImage]:
    """Every analysed instance of the payload as a model input, read in parallel threads.

    Raises:
        StorageUnavailable: storage failed to read a file (transient).
        UnreadableImage: an instance is missing, changed since it was received, or cannot be
            decoded. One unreadable image makes the whole study conservative: a verdict on part
            of a study must never clear a patient.
    """
    with ThreadPoolExecutor(max_workers=min(len(payload.instances), _READERS) or 1) as pool:
        return list(pool.map(lambda ref: _read_one(ref, storage_dir, size), payload.instances))


def _read_one(ref: InstanceRef, storage_dir: Path, size: int) -> ReadImage:
    try:
        data = (storage_dir / ref.storage_key).read_bytes()
    except FileNotFoundError as error:
        raise UnreadableImage(f"instance {ref.sop_instance_uid} is missing from storage") from error
    except OSError as error:
        raise StorageUnavailable(
            f"instance {ref.sop_instance_uid} cannot be read from storage: {error}"
        ) from error
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        raise UnreadableImage(f"instance {ref.sop_instance_uid} changed on disk since it was received")
    pixels, meta = read_dicom(io.BytesIO(data))  # the bytes just checked, not a second read
    return ReadImage(ref, meta, prepare(pixels, meta, size))
