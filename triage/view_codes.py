"""A mammogram's view from its header: the View Code Sequence (PS3.16 CID 4014) and any diagnostic
View Modifier (CID 4015), as the screening gate reads them."""

from __future__ import annotations

from pydicom import Dataset

# View Code Sequence values (CID 4014) for the two standard screening views, SNOMED CT and the
# retired SNOMED-RT codes that older modalities still send.
_VIEW_CODES = {
    "399162004": "CC",
    "R-10242": "CC",
    "399368009": "MLO",
    "R-10226": "MLO",
}


# View Modifier Code Sequence values (CID 4015) that make a view a diagnostic work-up image.
_DIAGNOSTIC_MODIFIERS = {"399055006": "SPOT COMPRESSION", "399163009": "MAGNIFICATION"}


def view_modifier(ds: Dataset) -> str:
    """The diagnostic modifier of the image's view, inside the View Code Sequence item or beside it."""
    view_codes = ds.get("ViewCodeSequence") or []
    modifiers = [*(view_codes[0].get("ViewModifierCodeSequence") or [] if view_codes else []),
                 *(ds.get("ViewModifierCodeSequence") or [])]  # fmt: skip
    for code in modifiers:
        found = _DIAGNOSTIC_MODIFIERS.get(str(code.get("CodeValue", "")))
        meaning = str(code.get("CodeMeaning", "")).lower()
        if found is None and ("spot" in meaning or "magnif" in meaning):  # retired codes, by meaning
            found = "SPOT COMPRESSION" if "spot" in meaning else "MAGNIFICATION"
        if found is not None:
            return found
    return ""


def view(ds: Dataset) -> str:
    """CC or MLO from the View Code Sequence (CID 4014), else the View Position."""
    view_codes = ds.get("ViewCodeSequence")
    if view_codes:
        code = view_codes[0]
        view = _VIEW_CODES.get(str(code.get("CodeValue", "")), str(code.get("CodeMeaning", "")))
        if view:
            return view
    return str(ds.get("ViewPosition", "")).upper()
