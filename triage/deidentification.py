"""De-identification of images that leave the installation (the label export): PS3.15 Annex E's
Basic Application Level Confidentiality Profile, the whole of Table E.1-1.

The table itself comes from Kitware's ``dicom-anonymizer`` (extracted from the 2026c standard);
triage applies it with its own actions, because its own engine acts only at the top level of a
data set and replaces UIDs at random per run, where an export must reach into every sequence and
give an image the same UID in every export (a keyed hash). Beyond the table: every private
element is removed, every name, date, time and free text the table does not name is emptied (short
text too, LO, SH and UC, but for the equipment's names and coded items' parts, ``_RETAINED``), every
UID that is not a registered one is replaced, overlay planes kept in Pixel Data's unused high bits
are cleared, and an image whose pixels may carry names (burned-in annotation) is refused.

Compound actions need the IOD's type of each attribute, which this module does not read; it takes
the choice that keeps an object valid whatever the type: X/Z becomes Z (present, empty), X/D,
X/Z/D and Z/D become D (a dummy value), X/Z/U* empties the sequence's own values and replaces the
UIDs inside. Identity leaves either way.
"""

from __future__ import annotations

import hmac
from copy import deepcopy
from functools import cache
from hashlib import sha256

import numpy as np
from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from pydicom import DataElement, Dataset
from pydicom.uid import UID

STANDARD = "dicomfields_2026c"
METHOD = "PS3.15 E.1 Basic Profile, Table E.1-1 of DICOM 2026c (triage)"
# Emptied wherever the table does not say otherwise: names, dates, times, and free text (LT, ST,
# UT: a Text Value inside a sequence the table only cleans can name anyone).
_NAMES_DATES_TEXT = {"PN", "DA", "DT", "TM", "LT", "ST", "UT"}
_META_IDENTIFYING = (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102)
# Short text (LO, SH, UC) outside the table is emptied too, for it may hold anything a modality's
# user typed (a contrast agent "as Dr Hansen said", a filter named after a room), but for these:
# what names the equipment, and the parts of a coded item (a view, a region, a method).
_SHORT_TEXT = {"LO", "SH", "UC"}
_RETAINED = frozenset({
    "Manufacturer", "ManufacturerModelName", "SoftwareVersions", "DetectorManufacturerName",
    "DetectorManufacturerModelName", "CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion",
    "CodeMeaning", "LongCodeValue", "URNCodeValue", "ContextIdentifier", "ContextGroupVersion",
    "MappingResource", "WindowCenterWidthExplanation", "RescaleType", "DeidentificationMethod",
})  # fmt: skip


class RefusedImage(ValueError):
    """An image that must not leave de-identified: its pixels may identify the patient."""


@cache
def actions() -> dict[tuple[int, ...], str]:
    """Table E.1-1 as tag -> action (X, Z, D, U); a 4-tuple is (group, element, group mask,
    element mask) for repeating groups (curves, overlays)."""
    tables = dicom_anonymization_database_selector(STANDARD)
    resolved = {
        "X_TAGS": "X", "Z_TAGS": "Z", "D_TAGS": "D", "U_TAGS": "U",
        "X_Z_TAGS": "Z", "X_D_TAGS": "D", "X_Z_D_TAGS": "D", "Z_D_TAGS": "D", "X_Z_U_STAR_TAGS": "U*",
    }  # fmt: skip
    found: dict[tuple[int, ...], str] = {}
    for table, action in resolved.items():
        for tag in tables[table]:
            found[tuple(tag)] = action
    return found


@cache
def _masked() -> list[tuple[tuple[int, ...], str]]:
    return [(tag, action) for tag, action in actions().items() if len(tag) == 4]


def action_for(tag: int) -> str | None:
    group, element = tag >> 16, tag & 0xFFFF
    found = actions().get((group, element))
    if found is not None:
        return found
    for (g, e, group_mask, element_mask), action in _masked():
        if group & group_mask == g & group_mask and element & element_mask == e & element_mask:
            return action
    return None


def keyed_uid(key: bytes, value: str) -> str:
    """A registered (standard) UID stays; any other becomes 2.25.<keyed hash>, the same every time."""
    if UID(value).name != value:
        return value
    return "2.25." + str(int(hmac.new(key, f"uid:{value}".encode(), sha256).hexdigest()[:30], 16))


_DUMMY: dict[str, object] = {
    "AE": "ANONYMIZED", "AS": "000Y", "CS": "ANONYMIZED", "DA": "19000101", "DS": "0",
    "DT": "19000101000000", "IS": "0", "LO": "ANONYMIZED", "LT": "ANONYMIZED", "PN": "ANONYMIZED",
    "SH": "ANONYMIZED", "ST": "ANONYMIZED", "TM": "000000", "UC": "ANONYMIZED", "UR": "http://anonymized.invalid",
    "UT": "ANONYMIZED", "FD": 0.0, "FL": 0.0, "SL": 0, "SS": 0, "UL": 0, "US": 0, "SV": 0, "UV": 0,
}  # fmt: skip


def _uids(element: DataElement, key: bytes) -> None:
    values = element.value if element.VM > 1 else [element.value]
    replaced = [keyed_uid(key, str(v)) for v in values]
    element.value = replaced if element.VM > 1 else replaced[0]


def _clean(dataset: Dataset, key: bytes, replace_all: bool = False) -> None:
    """Apply the table to ``dataset`` and every item in it. ``replace_all``: inside a sequence the
    table says D to (an institution's code, say), every value is replaced, whatever it is."""
    for element in list(dataset):
        action = action_for(element.tag) or ("D" if replace_all and element.VR != "UI" else None)
        if action == "X":
            del dataset[element.tag]
        elif element.VR == "SQ":
            for item in element.value or ():
                _clean(item, key, replace_all or action == "D")  # what it holds is cleaned in turn
            if action == "Z":
                element.value = []
        elif element.VR == "UI" and element.value:
            _uids(element, key)  # U, and every instance UID the table does not name
        elif action == "D":
            element.value = _DUMMY.get(element.VR, b"\x00\x00" if element.VR.startswith("O") else None)
        elif action in ("Z", "U*") or element.VR in _NAMES_DATES_TEXT:
            element.value = None  # zero length: still present where the IOD needs it (Type 2)
        elif action is None and element.VR in _SHORT_TEXT and element.keyword not in _RETAINED:
            element.value = None


def _clear_unused_high_bits(ds: Dataset) -> None:
    """Clear the bits of Pixel Data above Bits Stored: older modalities kept overlay planes there
    (an annotation, a name), which a viewer that shows overlays draws. Unsigned data only: signed
    data carries its sign extension in those bits."""
    if "PixelData" not in ds or int(ds.get("PixelRepresentation", 0)) != 0:
        return
    allocated, stored = int(ds.get("BitsAllocated", 0)), int(ds.get("BitsStored", 0))
    if not 0 < stored < allocated or allocated not in (8, 16, 32):
        return
    meta = getattr(ds, "file_meta", None)
    if meta is not None and UID(meta.get("TransferSyntaxUID", "")).is_compressed:
        ds.decompress()
    pixels = ds.pixel_array
    high_bit = int(ds.get("HighBit", stored - 1))
    mask = ((1 << stored) - 1) << (high_bit - stored + 1)
    if np.any(pixels & ~np.asarray(mask, dtype=pixels.dtype)):
        ds.PixelData = (pixels & np.asarray(mask, dtype=pixels.dtype)).astype(pixels.dtype).tobytes()


def deidentify(ds: Dataset, key: bytes, patient_key: str, allow_unflagged: bool = False) -> Dataset:
    """A de-identified copy of ``ds`` (see the module's docstring), ``patient_key`` as its Patient ID.

    Raises:
        RefusedImage: BurnedInAnnotation is YES, or absent without ``allow_unflagged`` (it is
            optional for CR: only the site knows whether its modalities burn names into pixels).
    """
    burned = str(ds.get("BurnedInAnnotation", "")).strip().upper()
    if burned == "YES":
        raise RefusedImage("burned-in annotation: the pixels may identify the patient")
    if burned != "NO" and not allow_unflagged:
        raise RefusedImage(
            "BurnedInAnnotation is not NO: its pixels may identify the patient "
            "(labels_export_unflagged_images allows images that do not say)"
        )
    copy = deepcopy(ds)
    copy.remove_private_tags()
    _clean(copy, key)
    _clear_unused_high_bits(copy)
    meta: Dataset | None = getattr(copy, "file_meta", None)
    if meta is not None:
        meta.MediaStorageSOPInstanceUID = copy.SOPInstanceUID
        for tag in _META_IDENTIFYING:  # the sending AEs and private meta data name the site
            if tag in meta:
                del meta[tag]
    copy.PatientID = patient_key
    copy.PatientName = "ANONYMOUS"
    copy.PatientIdentityRemoved = "YES"
    copy.DeidentificationMethod = METHOD
    method = Dataset()
    method.CodeValue, method.CodingSchemeDesignator = "113100", "DCM"
    method.CodeMeaning = "Basic Application Confidentiality Profile"
    copy.DeidentificationMethodCodeSequence = [method]
    return copy
