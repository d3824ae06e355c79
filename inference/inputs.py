"""A study version's instances read from storage once, checked against the hashes they arrived with.

Each image is decoded once per study: the pipelines, the shadow model, the structured report and the
summary image all read the same ``StudyImages``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import Dataset

from triage.cards import IntendedUse
from triage.header_facts import HeaderFacts, header_facts
from triage.imaging import UnreadableImage, blank_malformed_dates, display_values
from triage.messages import AnalyseStudy, InstanceRef
from triage.stored import StoredUnreadable, open_stored

# Decoding and hashing release the GIL for most of their time: read a study's images at once.
_READERS = max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class SourceImage:
    """One instance of the study: its header and display values, or why they could not be read."""

    ref: InstanceRef
    dataset: Dataset | None  # the header without pixel data; None when the file is not DICOM
    facts: HeaderFacts
    pixels: np.ndarray | None  # 0-1 display values; None when unreadable
    problem: str = ""


@dataclass(frozen=True)
class StudyImages:
    images: tuple[SourceImage, ...]

    @property
    def problem(self) -> str | None:
        """Why the study cannot be analysed: its first unreadable image. One unreadable image makes
        the whole study conservative: a verdict on part of a study must never clear a patient."""
        return next((image.problem for image in self.images if image.problem), None)

    @property
    def headers(self) -> list[Dataset]:
        return [image.dataset for image in self.images if image.dataset is not None]

    def outside(self, intended_use: IntendedUse) -> str | None:
        """Why an image is outside the intended use of the model about to read it (None: all inside);
        the listener's gate checked the bundled card, this checks the card of the model that runs."""
        for image in self.images:
            why = intended_use.why_not(image.ref.sop_class_uid, image.facts) if image.dataset else None
            if why is not None:
                return f"{why} ({image.ref.sop_instance_uid})"
        return None


def read_study(payload: AnalyseStudy, storage_dir: Path) -> StudyImages:
    """Every analysed instance of the payload, read in parallel threads.

    Raises:
        StorageUnavailable: storage failed to read a file (transient).
    """
    with ThreadPoolExecutor(max_workers=min(len(payload.instances), _READERS) or 1) as pool:
        return StudyImages(tuple(pool.map(lambda ref: _read_one(ref, storage_dir), payload.instances)))


def _read_one(ref: InstanceRef, storage_dir: Path) -> SourceImage:
    try:
        ds = open_stored(storage_dir, ref.storage_key, ref.sha256, storage_dir.resolve().parent)
    except StoredUnreadable as unreadable:
        return _unreadable(ref, f"instance {ref.sop_instance_uid}: {unreadable}")
    facts = header_facts(ds)
    blank_malformed_dates(ds)  # after the facts (age) are read; before any result copies the header
    try:
        pixels = display_values(ds)
    except UnreadableImage as error:
        return SourceImage(ref, ds, facts, None, str(error))
    finally:
        if "PixelData" in ds:
            del ds.PixelData  # the header stays for the reports; the pixels live on as display values
    return SourceImage(ref, ds, facts, pixels)


def _unreadable(ref: InstanceRef, problem: str) -> SourceImage:
    return SourceImage(ref, None, HeaderFacts(), None, problem)
