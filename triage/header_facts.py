"""What triage reads of an image's header, once, when the listener receives it: modality, body part,
laterality and view, age, lossy compression, the scanner. Stored with each instance (JSON), read by
routing, the intended-use gate, the model inputs and the drift statistics. No pixels here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import date
from typing import Any

from pydicom import Dataset

from triage.view_codes import view, view_modifier


@dataclass(frozen=True)
class HeaderFacts:
    """What triage reads of an image's header, derived once per image and stored with its instance."""

    modality: str = ""
    body_part_examined: str = ""
    laterality: str = ""  # Image Laterality, else (series) Laterality: L, R, B, U or empty
    view: str = ""  # CC / MLO from the View Code Sequence (CID 4014), else View Position
    breast_implant_present: str = ""
    photometric_interpretation: str = "MONOCHROME2"
    pixel_spacing_mm: tuple[float, float] | None = None  # (row spacing, column spacing)
    # First value of Patient Orientation (0020,0020): where the image's rows point, e.g. "A" or "P".
    row_direction: str = ""
    series_number: str = ""
    instance_number: str = ""
    # The patient's age at the study in years: Patient's Age, else Patient's Birth Date and the
    # Study Date (None: neither is there, or they cannot be read).
    age_years: float | None = None
    # Lossy compression, now or before (Lossy Image Compression "01", or a lossy transfer syntax).
    lossy: bool = False
    # A diagnostic view modifier of the view (CID 4015): "SPOT COMPRESSION" or "MAGNIFICATION" (a
    # work-up image, never a screening view); empty for a plain view.
    view_modifier: str = ""
    # The modality that made it (Manufacturer, Manufacturer's Model Name): the score drift is watched
    # per scanner, since a new detector or a software update shifts scores before outcomes show it.
    manufacturer: str = ""
    model_name: str = ""

    @property
    def scanner(self) -> str:
        """Manufacturer and model, as the drift statistics group by them ("" when neither is given)."""
        return " ".join(part for part in (self.manufacturer, self.model_name) if part)[:128]

    @property
    def chest_wall_on_the_right(self) -> bool:
        """For a mammogram: rows pointing posterior, or (no orientation given) a right breast."""
        if self.row_direction:
            return self.row_direction.startswith("P")
        return self.laterality == "R"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> HeaderFacts:
        """Read stored facts; keys an older version did not store take their defaults."""
        known = {f.name for f in fields(cls)}
        kept = {key: value for key, value in values.items() if key in known}
        if kept.get("pixel_spacing_mm") is not None:
            kept["pixel_spacing_mm"] = tuple(kept["pixel_spacing_mm"])
        return cls(**kept)


def header_facts(ds: Dataset) -> HeaderFacts:
    """Derive the header facts from DICOM attributes, by keyword."""
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    return HeaderFacts(
        modality=str(ds.get("Modality", "")).upper(),
        body_part_examined=str(ds.get("BodyPartExamined", "")).upper(),
        laterality=str(ds.get("ImageLaterality", "") or ds.get("Laterality", "")).upper(),
        view=view(ds),
        view_modifier=view_modifier(ds),
        breast_implant_present=str(ds.get("BreastImplantPresent", "")).upper(),
        photometric_interpretation=str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
        pixel_spacing_mm=(float(spacing[0]), float(spacing[1])) if spacing and len(spacing) == 2 else None,
        row_direction=str((ds.get("PatientOrientation") or [""])[0]).upper(),
        series_number=str(ds.get("SeriesNumber", "")),
        instance_number=str(ds.get("InstanceNumber", "")),
        age_years=age_years(ds),
        lossy=_lossy(ds),
        manufacturer=str(ds.get("Manufacturer", "") or "").strip()[:64],
        model_name=str(ds.get("ManufacturerModelName", "") or "").strip()[:64],
    )


# Transfer syntaxes whose compression loses information (PS3.5 Annex A; PS3.6 Table A-1).
LOSSY_TRANSFER_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",  # JPEG Baseline
        "1.2.840.10008.1.2.4.51",  # JPEG Extended
        "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
        "1.2.840.10008.1.2.4.93",  # JPEG 2000 multi-component
        "1.2.840.10008.1.2.4.203",  # HTJ2K
        *(f"1.2.840.10008.1.2.4.{n}" for n in range(100, 109)),  # MPEG-2, MPEG-4, HEVC
    }
)
_AGE_UNITS = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}


def _lossy(ds: Dataset) -> bool:
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    return str(ds.get("LossyImageCompression", "")).strip() == "01" or syntax in LOSSY_TRANSFER_SYNTAXES


def age_years(ds: Dataset) -> float | None:
    """Patient's Age (AS: nnnD/W/M/Y), else the years from Patient's Birth Date to the Study Date."""
    age = str(ds.get("PatientAge", "") or "").strip().upper()
    if len(age) == 4 and age[:3].isdigit() and age[3] in _AGE_UNITS:
        return round(int(age[:3]) * _AGE_UNITS[age[3]], 2)
    birth, study = str(ds.get("PatientBirthDate", "") or ""), str(ds.get("StudyDate", "") or "")
    try:
        born, seen = date.fromisoformat(_iso(birth)), date.fromisoformat(_iso(study))
    except ValueError:
        return None
    years = (seen - born).days / 365.25
    return round(years, 2) if years >= 0 else None


def _iso(da: str) -> str:
    """A DA value (YYYYMMDD) as ISO 8601, which date.fromisoformat reads."""
    da = da.strip()
    return f"{da[:4]}-{da[4:6]}-{da[6:8]}" if len(da) == 8 and da.isdigit() else da + "!"
