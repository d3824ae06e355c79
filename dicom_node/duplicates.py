"""Duplicates whose bytes differ, compared by what they show: a PACS that re-sends an instance in
another transfer syntax (transcoding is common) sends the same image in other bytes.

The C-STORE handler quarantines such a duplicate and makes the study conservative at once (its
memory and time are bounded; decoding two images is not). The leading listener then compares,
a few per pass: the decoded stored values, and the attributes a result depends on. Equal, and
both lossless: the conflict is lifted (audited) unless something else of the study is unresolved.
Anything else (a lossy syntax, other pixels, another patient) stays a conflict for an admin.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from pydicom import Dataset, uid
from pydicom.uid import UID

from triage.imaging import UnreadableImage, check_decoded_size
from triage.records import conflicts, queries
from triage.records.db import Database
from triage.stored import StorageUnavailable, StoredUnreadable, open_stored

logger = logging.getLogger(__name__)
LOSSLESS_COMPRESSED = frozenset({
    uid.RLELossless, uid.JPEGLossless, uid.JPEGLosslessSV1, uid.JPEGLSLossless, uid.JPEG2000Lossless,
    uid.HTJ2KLossless, uid.HTJ2KLosslessRPCL,
})  # fmt: skip

# What a result and its report depend on, beyond the pixels: who, which study and image, geometry,
# how stored values become display values.
COMPARED = (
    "PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate", "PatientSex", "PatientAge",
    "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "Modality", "BodyPartExamined",
    "ImageLaterality", "Laterality", "ViewPosition", "Rows", "Columns", "NumberOfFrames",
    "SamplesPerPixel", "PhotometricInterpretation", "BitsStored", "PixelRepresentation",
    "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth", "VOILUTFunction",
    "PixelSpacing", "ImagerPixelSpacing", "BurnedInAnnotation",
)  # fmt: skip


def differences(first: Dataset, second: Dataset) -> str | None:
    """Why the two instances are not the same image (None: they are)."""
    for ds in (first, second):
        syntax = UID(ds.file_meta.TransferSyntaxUID)
        if syntax.is_compressed and syntax not in LOSSLESS_COMPRESSED:
            return f"{syntax.name} is lossy: its pixels cannot be compared exactly"
    changed = [k for k in COMPARED if str(first.get(k, "")) != str(second.get(k, ""))]
    if changed:
        return f"attributes differ: {', '.join(changed)}"
    for ds in (first, second):
        check_decoded_size(ds, one_frame_of_many=False)
    if not np.array_equal(first.pixel_array, second.pixel_array):
        return "the decoded pixels differ"
    return None


class DuplicateComparer:
    """Compares the pending quarantined duplicates (a few per pass) and records what it found."""

    def __init__(self, database: Database, storage_dir: Path, quarantine_dir: Path, scratch: Path) -> None:
        self._database = database
        self._storage_dir = storage_dir
        self._quarantine_dir = quarantine_dir
        self._scratch = scratch

    def run(self, limit: int = 10) -> int:
        """Compare up to ``limit`` pending duplicates; returns how many conflicts were lifted."""
        with self._database.reading() as session:
            pending = [
                (row, queries.find_instance(session, row.sop_instance_uid))
                for row in conflicts.pending_comparisons(session, limit)
            ]
            work = [
                (row.id, (row.storage_key, row.sha256), (inst.storage_key, inst.sha256) if inst else None)
                for row, inst in pending
            ]
        lifted = 0
        for row_id, resent, stored in work:
            if stored is None:
                same, why = False, "the stored instance is gone"
            else:
                try:
                    found = differences(
                        open_stored(self._storage_dir, *stored, self._scratch),
                        open_stored(self._quarantine_dir, *resent, self._scratch),
                    )
                except (StoredUnreadable, StorageUnavailable) as error:
                    found = f"could not be compared: {error}"
                except (UnreadableImage, ValueError, AttributeError, EOFError) as error:
                    found = f"could not be compared ({type(error).__name__})"
                same = found is None
                why = "the same image in another transfer syntax" if same else str(found)
            with self._database.session() as session:
                lifted += conflicts.record_comparison(session, row_id, same, why, self._database.now())
            logger.info("quarantined duplicate %d compared: %s", row_id, why)
        return lifted
