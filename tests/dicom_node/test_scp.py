"""The listener over loopback against DCMTK's echoscu and storescu (real peers)."""

import subprocess

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE, _config
from sqlalchemy import select

from delivery import scu
from dicom_node.status import Status
from testkit import synthetic
from testkit.peers import PEER_ENV, require_tool, storescu, wait_until
from triage.records import storage
from triage.records.tables import Instance, QuarantinedObject, Study, StudyState, StudyVersion
from triage.values import DicomPeer

pytestmark = pytest.mark.integration


def rows(listener, model):
    with listener.database.session() as session:
        return list(session.scalars(select(model).order_by(model.id)))


def test_echoscu_gets_success(listener):
    result = subprocess.run(
        [
            require_tool("echoscu"),
            "-aet",
            "ECHOSCU",
            "-aec",
            "TRIAGE",
            "127.0.0.1",
            str(listener.port),
        ],
        capture_output=True,
        text=True,
        env=PEER_ENV,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_unknown_calling_ae_is_refused(listener, tmp_path):
    [path] = synthetic.write([synthetic.dx()], tmp_path / "in")
    result = storescu(listener.port, path, calling="STRANGER")
    assert result.returncode != 0
    assert "Calling AE Title Not Recognized" in result.stderr
    assert rows(listener, Instance) == []


def test_wrong_called_ae_is_refused(listener, tmp_path):
    [path] = synthetic.write([synthetic.dx()], tmp_path / "in")
    result = storescu(listener.port, path, called="NOTTRIAGE")
    assert result.returncode != 0
    assert "Called AE Title Not Recognized" in result.stderr


def test_stored_instance_is_on_disk_with_hash_and_row(listener, tmp_path):
    paths = synthetic.write(synthetic.screen(), tmp_path / "in")
    result = storescu(listener.port, *paths)
    assert result.returncode == 0, result.stderr
    instances = rows(listener, Instance)
    assert len(instances) == 4
    for instance in instances:
        stored = listener.settings.storage_dir / instance.storage_key
        assert storage.sha256_of(stored) == instance.sha256
        assert instance.size_bytes == stored.stat().st_size
        ds = dcmread(stored)
        assert ds.SOPInstanceUID == instance.sop_instance_uid
        assert instance.storage_key == f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
    [study] = rows(listener, Study)
    assert study.patient_id == "SYN0001" and study.accession_number == "ACC0001"
    # The four views are the screen's expected content: complete and queued without a quiet period.
    wait_until(lambda: rows(listener, StudyVersion)[0].state == StudyState.QUEUED, timeout=5)


def encode(tool_args, source, target):
    result = subprocess.run(
        [*tool_args, str(source), str(target)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return target


@pytest.mark.parametrize(
    ("tool", "bits", "expected_syntax", "lossless", "propose"),
    [
        (("dcmcjpeg",), 12, JPEGLosslessSV1, True, "-xs"),
        (("dcmcjpeg", "+el"), 12, JPEGLossless, True, None),
        (("dcmcjpeg", "+eb"), 8, JPEGBaseline8Bit, False, "-xy"),
        (("dcmcjpeg", "+ee"), 12, JPEGExtended12Bit, False, "-xx"),
        (("dcmcjpls",), 12, JPEGLSLossless, True, "-xt"),
        (("dcmcrle",), 12, RLELossless, True, "-xr"),
        (("dcmconv", "+td"), 12, DeflatedExplicitVRLittleEndian, True, "-xd"),
        (("gdcmconv", "--j2k"), 12, JPEG2000Lossless, True, "-xv"),
        (("gdcmconv", "--j2k", "--lossy"), 12, JPEG2000, False, "-xw"),
    ],
    ids=[
        "jpeg-lossless-sv1",
        "jpeg-lossless",
        "jpeg-baseline",
        "jpeg-extended",
        "jpeg-ls",
        "rle",
        "deflated",
        "j2k-lossless",
        "j2k",
    ],
)
def test_compressed_inputs_are_stored_as_sent_and_decode(
    listener, tmp_path, tool, bits, expected_syntax, lossless, propose
):
    original = synthetic.dx(bits=bits, rows=128, columns=96)
    [plain] = synthetic.write([original], tmp_path / "plain")
    compressed = encode([require_tool(tool[0]), *tool[1:]], plain, tmp_path / "compressed.dcm")
    assert dcmread(compressed).file_meta.TransferSyntaxUID == expected_syntax
    if propose is None:  # storescu has no flag to propose this syntax; triage's own SCU proposes the file's
        [sent] = scu.send([compressed], DicomPeer.parse(f"TRIAGE@127.0.0.1:{listener.port}"), "TRIAGESCU")
        assert sent.ok, sent.detail
    else:
        result = storescu(listener.port, compressed, extra=(propose,))
        assert result.returncode == 0, result.stderr
    [instance] = rows(listener, Instance)
    assert instance.transfer_syntax_uid == expected_syntax
    stored = dcmread(listener.settings.storage_dir / instance.storage_key)
    pixels = stored.pixel_array
    assert pixels.shape == (128, 96)
    if lossless:
        np.testing.assert_array_equal(pixels, original.pixel_array)
    else:
        assert np.abs(pixels.astype(float) - original.pixel_array).mean() < (1 << bits) / 20


@pytest.mark.filterwarnings("ignore:Expected explicit VR")
def test_malformed_data_set_is_quarantined_with_cannot_understand(listener, tmp_path):
    [path] = synthetic.write([synthetic.dx()], tmp_path / "in")
    raw = path.read_bytes()
    meta_end = 144 + int.from_bytes(raw[140:144], "little")  # preamble, DICM, group length element
    path.write_bytes(raw[:meta_end] + b"\x13\x37" * 500)  # a valid file meta, then noise
    # storescu parses a file before sending it, so a peer that streams raw bytes sends this one.
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title="TRIAGE")
    assert assoc.is_established
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        response = assoc.send_c_store(path)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = False
        assoc.release()
    assert response.Status == Status.CANNOT_UNDERSTAND
    assert rows(listener, Instance) == []
    [kept] = rows(listener, QuarantinedObject)
    assert kept.reason == "the data set has neither SOP Class UID nor SOP Instance UID"
    assert (listener.settings.quarantine_dir / kept.storage_key).is_file()


def test_data_set_without_study_uid_does_not_match_its_sop_class(listener, tmp_path):
    ds = synthetic.dx()
    del ds.StudyInstanceUID
    [path] = synthetic.write([ds], tmp_path / "in")
    result = storescu(listener.port, path, extra=("-nh", "-v"))
    assert "Received Store Response (Error: DataSetDoesNotMatchSOPClass)" in result.stderr
    [kept] = rows(listener, QuarantinedObject)
    assert kept.reason == "StudyInstanceUID is missing or not a valid UID"


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_malformed_sop_instance_uid_does_not_match_its_sop_class(listener, tmp_path):
    ds = synthetic.dx(sop_instance_uid="1.2.826.0.1.3680043.abc")
    [path] = synthetic.write([ds], tmp_path / "in")
    result = storescu(listener.port, path, extra=("-nh", "-v"))
    assert "Received Store Response (Error: DataSetDoesNotMatchSOPClass)" in result.stderr
    assert rows(listener, Instance) == []


def test_same_instance_twice_is_success_and_recorded_once(listener, tmp_path):
    paths = synthetic.write([synthetic.dx()], tmp_path / "in")
    assert storescu(listener.port, *paths).returncode == 0
    assert storescu(listener.port, *paths).returncode == 0
    assert len(rows(listener, Instance)) == 1
    assert rows(listener, QuarantinedObject) == []


def test_conflicting_duplicate_is_quarantined_and_study_goes_conservative(listener, tmp_path):
    ids = synthetic.StudyIds()
    first = synthetic.dx(ids, seed=1)
    [first_path] = synthetic.write([first], tmp_path / "first")
    assert storescu(listener.port, first_path).returncode == 0
    [stored] = rows(listener, Instance)
    stored_bytes = (listener.settings.storage_dir / stored.storage_key).read_bytes()

    changed = synthetic.dx(ids, seed=2, sop_instance_uid=first.SOPInstanceUID)
    [changed_path] = synthetic.write([changed], tmp_path / "changed")
    assert storescu(listener.port, changed_path).returncode == 0

    assert (listener.settings.storage_dir / stored.storage_key).read_bytes() == stored_bytes
    [kept] = rows(listener, QuarantinedObject)
    assert kept.sop_instance_uid == first.SOPInstanceUID and kept.sha256 != stored.sha256
    assert rows(listener, Study)[0].conflict
    version = wait_until(
        lambda: next((v for v in rows(listener, StudyVersion) if v.state == StudyState.NOT_ANALYSED), None)
    )
    assert "conflicting duplicate" in version.reason


def test_associations_beyond_the_maximum_are_refused(make_settings):
    from dicom_node.listener import Listener

    node = Listener(make_settings(max_associations=1))
    node.start()
    try:
        first = AE(ae_title="TESTSCU")
        first.add_requested_context("1.2.840.10008.1.1")
        held = first.associate("127.0.0.1", node.port, ae_title="TRIAGE")
        assert held.is_established
        second = AE(ae_title="TESTSCU")
        second.add_requested_context("1.2.840.10008.1.1")
        refused = second.associate("127.0.0.1", node.port, ae_title="TRIAGE")
        assert refused.is_rejected
        held.release()
    finally:
        node.stop()


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.parametrize("refused_first", [False, True])
def test_a_refused_instance_makes_its_study_conservative(listener, tmp_path, refused_first):
    """An image of the study answered 0xA900 is missing from it: no verdict on the rest may clear the
    patient, whichever arrives first."""
    ids = synthetic.StudyIds()
    good = synthetic.dx(ids, instance_number=1)
    bad = synthetic.dx(ids, instance_number=2)
    bad.SeriesInstanceUID = "1.2.3.abc"  # not a valid UID: refused as not matching its SOP class
    [good_path] = synthetic.write([good], tmp_path / "good")
    [bad_path] = synthetic.write([bad], tmp_path / "bad")
    for path in (bad_path, good_path) if refused_first else (good_path, bad_path):
        storescu(listener.port, path, extra=("-nh",))
    [kept] = rows(listener, QuarantinedObject)
    assert kept.study_instance_uid == ids.study_instance_uid
    assert rows(listener, Study)[0].conflict
    version = wait_until(
        lambda: next((v for v in rows(listener, StudyVersion) if v.state == StudyState.NOT_ANALYSED), None)
    )
    assert "refused" in version.reason
