"""Read a study version's instances from storage into model inputs, checking each file's hash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from dicom_node.dispatch import AnalyseStudy, InstanceRef
from inference.transforms import ImageMeta, Prepared, UnreadableImage, prepare, read_dicom


class StorageUnavailable(Exception):
    """Storage could not be read just now (a shared filesystem hiccup); worth a bounded retry."""


@dataclass(frozen=True)
class ReadImage:
    ref: InstanceRef
    meta: ImageMeta
    prepared: Prepared


def read_study(payload: AnalyseStudy, storage_dir: Path, size: int) -> list[ReadImage]:
    """Every analysed instance of the payload as a model input.

    Raises:
        StorageUnavailable: storage failed to read a file (transient).
        UnreadableImage: an instance is missing, changed since it was received, or cannot be
            decoded. One unreadable image makes the whole study conservative: a verdict on part
            of a study must never clear a patient.
    """
    images = []
    for ref in payload.instances:
        path = storage_dir / ref.storage_key
        try:
            data = path.read_bytes()
        except FileNotFoundError as error:
            raise UnreadableImage(f"instance {ref.sop_instance_uid} is missing from storage") from error
        except OSError as error:
            raise StorageUnavailable(
                f"instance {ref.sop_instance_uid} cannot be read from storage: {error}"
            ) from error
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise UnreadableImage(f"instance {ref.sop_instance_uid} changed on disk since it was received")
        del data
        pixels, meta = read_dicom(path)
        images.append(ReadImage(ref, meta, prepare(pixels, meta, size)))
    return images
