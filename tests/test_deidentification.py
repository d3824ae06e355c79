"""The label export's de-identification: the whole of PS3.15 Table E.1-1,
into every sequence; the burned-in annotation gate; a label key made whole or not at all."""

import threading
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.tag import Tag

from testkit import synthetic
from triage.deidentification import RefusedImage, action_for, actions, deidentify
from worklist.labels import WeakLabelKey, label_key

KEY = b"k" * 32
CANARY = "CANARYX"


def canary_value(vr):
    """A value of this VR that carries the canary wherever the VR allows text."""
    if vr in ("AE", "CS", "LO", "LT", "SH", "ST", "UC", "UT"):
        return CANARY
    if vr == "PN":
        return f"{CANARY}^Anna"
    if vr == "UR":
        return f"http://{CANARY.lower()}.example/"
    if vr in ("DA", "DT"):
        return "19610704" if vr == "DA" else "19610704120000"
    if vr == "TM":
        return "120000"
    if vr == "UI":
        return "1.2.826.0.1.3680043.8.498.777"
    if vr == "AS":
        return "063Y"
    if vr in ("IS", "DS"):
        return "777"
    if vr in ("US", "UL", "SS", "SL", "FL", "FD", "SV", "UV", "AT"):
        return 777
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return CANARY.encode() + b"!"
    return None


def every_table_attribute():
    """A data set holding every attribute of Table E.1-1 that the data dictionary knows (a
    sequence holds a name and an ID in its item), each with a canary value."""
    ds = synthetic.dx()
    added = 0
    for tag in actions():
        if len(tag) != 2 or tag[0] in (0x0000, 0x0002):  # command and file meta groups: not in a data set
            continue
        number = Tag(*tag)
        try:
            vr = dictionary_VR(number).split(" or ")[0]
        except KeyError:
            continue
        if vr == "SQ":
            item = Dataset()
            item.PersonName, item.TextValue = f"{CANARY}^Bo", CANARY
            ds.add_new(number, "SQ", [item])
        elif (value := canary_value(vr)) is not None:
            ds.add_new(number, vr, value)
        else:
            continue
        added += 1
    return ds, added


def test_every_attribute_of_the_table_leaves_no_trace(tmp_path):
    ds, added = every_table_attribute()
    assert added > 450  # the table has 650-odd rows, nearly all in pydicom's dictionary
    ds.BurnedInAnnotation = "NO"
    clean = deidentify(ds, KEY, "abc123")
    path = tmp_path / "clean.dcm"
    clean.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    assert CANARY.encode() not in data and CANARY.lower().encode() not in data
    assert b"19610704" not in data and b"1.2.826.0.1.3680043.8.498.777" not in data
    for element in ds:
        if element.keyword in ("PatientID", "PatientName"):
            continue  # replaced by the patient key and ANONYMOUS
        action = action_for(element.tag)
        kept = clean.get(element.tag)
        if action == "X":
            assert kept is None, keyword_for_tag(element.tag)
        elif action == "Z" and element.VR != "SQ":
            assert kept is not None and kept.is_empty, keyword_for_tag(element.tag)


def test_the_attributes_a_subset_missed_are_removed():
    ds = synthetic.dx()
    ds.ProtocolName = "Wrist, Dr Hansen's protocol"
    ds.RequestedProcedureComments = "patient fell at home"
    ds.AdmittingDiagnosesDescription = "fall"
    ds.MedicalAlerts = "allergic to penicillin"
    ds.DetectorID = "DET-RH-0042"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "RH", "L", "Rigshospitalet"
    ds.InstitutionCodeSequence = [code]
    request = Dataset()
    request.RequestedProcedureID, request.AccessionNumber = "RP-99", "ACC-99"
    request.StudyInstanceUID = ds.StudyInstanceUID
    ds.RequestAttributesSequence = [request]
    clean = deidentify(ds, KEY, "abc123")
    for keyword in ("ProtocolName", "RequestedProcedureComments", "AdmittingDiagnosesDescription",
                    "MedicalAlerts", "DetectorID"):  # fmt: skip
        assert clean.get(keyword) in (None, "", "ANONYMIZED"), keyword  # X, Z or a D dummy
    assert "RP-99" not in str(clean) and "ACC-99" not in str(clean)
    assert "Rigshospitalet" not in str(clean)
    assert clean.DeidentificationMethod.startswith("PS3.15 E.1 Basic Profile, Table E.1-1 of DICOM 2026c")


def test_overlays_and_curves_are_removed_as_repeating_groups():
    ds = synthetic.dx()
    ds.add_new(0x60003000, "OW", b"\x01\x02" * 8)  # Overlay Data: may be a burned-in name
    ds.add_new(0x60024000, "LT", "Canary overlay comment")
    ds.add_new(0x50003000, "OW", b"\x00\x00")  # Curve Data (retired)
    clean = deidentify(ds, KEY, "abc123")
    assert all(tag not in clean for tag in (0x60003000, 0x60024000, 0x50003000))


@pytest.mark.parametrize(("flag", "allowed", "exported"), [
    ("NO", False, True), ("YES", False, False), ("YES", True, False),
    (None, False, False), (None, True, True),
])  # fmt: skip
def test_only_images_that_say_no_burned_in_annotation_leave_unless_the_site_allows_unflagged(
    flag, allowed, exported
):
    ds = synthetic.dx()
    del ds.BurnedInAnnotation
    if flag is not None:
        ds.BurnedInAnnotation = flag
    if exported:
        assert deidentify(ds, KEY, "k", allow_unflagged=allowed).PatientIdentityRemoved == "YES"
    else:
        with pytest.raises(RefusedImage, match="identify the patient"):
            deidentify(ds, KEY, "k", allow_unflagged=allowed)


def test_the_label_key_is_made_whole_once_whoever_races(tmp_path):
    keys, errors = [], []

    def make():
        try:
            keys.append(label_key(tmp_path))
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(keys) == 8 and len(set(keys)) == 1 and len(keys[0]) == 32
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["label-key"]  # no temporary left
    assert (tmp_path / "label-key").stat().st_mode & 0o777 == 0o600


def test_a_short_label_key_is_refused(tmp_path):
    (tmp_path / "label-key").write_bytes(b"")  # what a crash mid-write used to leave
    with pytest.raises(WeakLabelKey, match="holds 0 bytes; a label key needs 32"):
        label_key(tmp_path)


def test_overlay_planes_in_the_unused_high_bits_of_pixel_data_are_cleared():
    """12 bits stored in 16: bit 15 drew a name as an overlay on older modalities."""
    import numpy as np

    ds = synthetic.dx(bits=16)
    ds.BitsStored, ds.HighBit = 12, 11
    pixels = np.arange(ds.Rows * ds.Columns, dtype=np.uint16).reshape(ds.Rows, ds.Columns) % 4096
    burned = pixels.copy()
    burned[10:20, 10:40] |= 1 << 15  # an overlay plane: a name's strokes
    ds.PixelData = burned.tobytes()
    ds.BurnedInAnnotation = "NO"
    clean = deidentify(ds, KEY, "abc123")
    assert np.array_equal(clean.pixel_array, pixels), "the image stays, the overlay bits go"


def test_short_text_outside_the_table_is_emptied_but_the_equipment_and_codes_stay():
    ds = synthetic.screen()[0]
    ds.ContrastBolusAgent = f"{CANARY} as Dr Hansen said"  # LO, outside Table E.1-1
    ds.FilterType = f"{CANARY} room 4"  # SH
    ds.Manufacturer, ds.ManufacturerModelName = "Vendor", "Model 9"
    ds.BurnedInAnnotation = "NO"
    clean = deidentify(ds, KEY, "abc123")
    assert CANARY not in str(clean)
    assert (clean.Manufacturer, clean.ManufacturerModelName) == ("Vendor", "Model 9")
    assert clean.ViewCodeSequence[0].CodeMeaning == ds.ViewCodeSequence[0].CodeMeaning
