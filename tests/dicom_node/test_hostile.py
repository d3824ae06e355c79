"""Hostile input at the DICOM edge: each attack is sent to the running listener over a
real association, and each ends with the listener still answering C-ECHO and storing a valid study."""

import contextlib
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation, Verification
from sqlalchemy import select

from dicom_node.headers import MAX_SEQUENCE_DEPTH
from dicom_node.status import Status
from testkit import synthetic
from testkit.peers import storescu, wait_until
from triage.records.storage import sha256_of
from triage.records.tables import Instance, QuarantinedObject, Study

pytestmark = pytest.mark.integration


def rows(listener, model):
    with listener.database.session() as session:
        return list(session.scalars(select(model).order_by(model.id)))


def send_raw(listener, path: Path, syntax=ExplicitVRLittleEndian) -> int:
    """Send a file's bytes as they are (storescu would parse, and refuse, what an attacker sends)."""
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(DigitalXRayImageStorageForPresentation, syntax)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title="TRIAGE")
    assert assoc.is_established
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        return int(assoc.send_c_store(path).Status)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = False
        assoc.release()


def still_serves(listener, tmp_path: Path) -> None:
    """The attack left the listener whole: C-ECHO succeeds and a valid instance is stored."""
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(Verification)
    ae.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title="TRIAGE")
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == Status.SUCCESS
        valid = synthetic.dx()
        assert assoc.send_c_store(valid).Status == Status.SUCCESS
    finally:
        assoc.release()
    assert str(valid.SOPInstanceUID) in {row.sop_instance_uid for row in rows(listener, Instance)}


def nested(depth: int) -> Dataset:
    """A valid DX instance carrying a private sequence nested ``depth`` levels deep."""
    ds = synthetic.dx()
    inner = Dataset()
    inner.add_new(0x00091002, "LO", "innermost")
    for _ in range(depth - 1):
        outer = Dataset()
        outer.add_new(0x00091010, "SQ", Sequence([inner]))
        inner = outer
    ds.add_new(0x00090010, "LO", "TRIAGE TEST")
    ds.add_new(0x00091010, "SQ", Sequence([inner]))
    return ds


def write_deep(ds: Dataset, path: Path) -> Path:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)  # pydicom writes sequences recursively too
    try:
        ds.save_as(path, enforce_file_format=True)
    finally:
        sys.setrecursionlimit(limit)
    return path


@pytest.mark.parametrize("depth", [MAX_SEQUENCE_DEPTH + 1, 1100], ids=["past-the-bound", "past-recursion"])
def test_sequences_nested_too_deep_are_refused_for_good_and_quarantined(listener, tmp_path, depth):
    """A poison object is 0xC000 (never "retry later", 0x0110, which a nesting past Python's
    recursion limit used to get) and kept in quarantine."""
    path = write_deep(nested(depth), tmp_path / "deep.dcm")
    assert send_raw(listener, path) == Status.CANNOT_UNDERSTAND
    [kept] = rows(listener, QuarantinedObject)
    assert kept.reason == f"sequences nest deeper than {MAX_SEQUENCE_DEPTH} levels"
    assert (listener.settings.quarantine_dir / kept.storage_key).is_file()
    assert rows(listener, Instance) == []
    still_serves(listener, tmp_path)


def test_sequences_nested_within_the_bound_are_stored(listener, tmp_path):
    path = write_deep(nested(MAX_SEQUENCE_DEPTH), tmp_path / "deep.dcm")
    assert send_raw(listener, path) == Status.SUCCESS
    assert len(rows(listener, Instance)) == 1


def with_raw_study_uid(tmp_path: Path, padding: bytes) -> Path:
    """A valid DX file whose Study Instance UID (41 characters, so padded to 42) is padded with
    ``padding`` instead of NUL. pydicom strips whitespace from a UID it is given, so the bytes are
    changed in the file, as a faulty or hostile sender would send them."""
    ds = synthetic.dx(synthetic.StudyIds(study_instance_uid="1.2.826.0.1.3680043.10.1." + "1" * 16))
    [path] = synthetic.write([ds], tmp_path / "in")
    raw = path.read_bytes()
    padded = str(ds.StudyInstanceUID).encode() + b"\0"
    assert len(padded) == 42 and raw.count(padded) == 1
    path.write_bytes(raw.replace(padded, padded[:-1] + padding))
    return path


@pytest.mark.parametrize("padding", [b"\n", b"\t", b"\r"], ids=["newline", "tab", "return"])
def test_a_uid_padded_with_whitespace_is_refused(listener, tmp_path, padding):
    assert (
        send_raw(listener, with_raw_study_uid(tmp_path, padding)) == Status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS
    )
    [kept] = rows(listener, QuarantinedObject)
    assert kept.reason == "StudyInstanceUID is missing or not a valid UID"
    assert rows(listener, Instance) == []
    still_serves(listener, tmp_path)


def test_a_uid_padded_with_one_space_is_taken_as_modalities_send_it(listener, tmp_path):
    assert send_raw(listener, with_raw_study_uid(tmp_path, b" ")) == Status.SUCCESS
    [row] = rows(listener, Study)
    assert row.study_instance_uid == "1.2.826.0.1.3680043.10.1." + "1" * 16


def big_private(syntax: str, size: int) -> Dataset:
    """A valid DX instance with a large private OB element, in ``syntax``."""
    ds = synthetic.dx()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.add_new(0x00090010, "LO", "TRIAGE TEST")
    ds.add_new(0x00091011, "OB", bytes(size))
    return ds


@pytest.mark.parametrize(
    "syntax", [ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian], ids=["explicit", "deflated"]
)
def test_a_large_private_element_is_stored_without_being_read_into_memory(listener, tmp_path, syntax):
    """96 MiB of private OB (a few hundred kilobytes once deflated): the listener reads the header
    without loading it; Python's allocations while receiving and checking stay far below it."""
    size = 96 << 20
    [path] = synthetic.write([big_private(syntax, size)], tmp_path / "in")
    tracemalloc.start()  # what Python allocates in this process, the listener's threads included
    try:
        if syntax == DeflatedExplicitVRLittleEndian:  # 100 KiB to send: pynetdicom sends it from here
            assert send_raw(listener, path, syntax) == Status.SUCCESS
        else:  # DCMTK's storescu, another process, sends the 96 MiB
            result = storescu(listener.port, path)
            assert result.returncode == 0, result.stderr
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 24 << 20, f"receiving took {peak >> 20} MiB of Python memory"
    [row] = rows(listener, Instance)
    assert row.transfer_syntax_uid == syntax
    assert sha256_of(listener.settings.storage_dir / row.storage_key) == row.sha256
    assert not list(listener.handlers.receiving.path.glob("*.inflated")), "the inflated copy is gone"
    still_serves(listener, tmp_path)


def test_a_deflate_bomb_past_the_instance_limit_is_refused(make_settings, tmp_path):
    """Deflated, 64 MiB of zeros travel in some 64 KiB; with a 16 MiB instance limit it is refused
    (0xC000, quarantined) without ever being inflated whole."""
    from dicom_node.listener import Listener

    node = Listener(make_settings(max_instance_bytes=16 << 20))
    node.start()
    try:
        [path] = synthetic.write([big_private(DeflatedExplicitVRLittleEndian, 64 << 20)], tmp_path / "in")
        assert path.stat().st_size < 1 << 20
        assert send_raw(node, path, DeflatedExplicitVRLittleEndian) == Status.CANNOT_UNDERSTAND
        [kept] = rows(node, QuarantinedObject)
        assert "inflates past the 16777216 bytes" in kept.reason
        assert rows(node, Instance) == []
        still_serves(node, tmp_path)
    finally:
        node.stop()


def sizes(receiving):
    """The sizes of the files being received (one may go while it is looked at)."""
    found = []
    for path in receiving.partial_files():
        with contextlib.suppress(FileNotFoundError):
            found.append(path.stat().st_size)
    return found


def slowed(assoc):
    """Pause before every PDU the association queues for sending (about 2 ms: 64 MiB in 4 KiB PDUs
    takes ~30 s). pynetdicom sends from a queue that a chunked C-STORE fills faster than a socket
    drains; unthrottled, the whole data set can be queued before the test aborts, and the A-ABORT
    then leaves after the last byte."""
    dul = assoc.dul
    send_pdu = dul.send_pdu

    def slowly(primitive):
        time.sleep(0.002)
        return send_pdu(primitive)

    dul.send_pdu = slowly


def test_aborted_transfers_leave_no_partial_files(make_settings, tmp_path):
    """Three 64 MiB C-STOREs, each aborted early: what they sent goes when the association does, not
    when the listener stops, so an allowed caller cannot walk the disk to the watermark. (Small PDUs,
    each queued after a pause, make each transfer take about 30 s, so the abort surely comes before
    its end.)"""
    from dicom_node.listener import Listener

    node = Listener(make_settings(maximum_pdu_bytes=4096))
    node.start()
    [path] = synthetic.write([big_private(ExplicitVRLittleEndian, 64 << 20)], tmp_path / "in")
    receiving = node.handlers.receiving
    try:
        for _ in range(3):
            ae = AE(ae_title="TESTSCU")
            ae.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)
            assoc = ae.associate("127.0.0.1", node.port, ae_title="TRIAGE")
            assert assoc.is_established
            slowed(assoc)
            _config.STORE_SEND_CHUNKED_DATASET = True
            try:
                threading.Thread(target=lambda a=assoc: a.send_c_store(path), daemon=True).start()
                wait_until(lambda: any(size > 2 << 20 for size in sizes(receiving)), timeout=30)
                assoc.abort()
            finally:
                _config.STORE_SEND_CHUNKED_DATASET = False
            wait_until(lambda: sizes(receiving) == [], timeout=10)
        assert rows(node, Instance) == []
        still_serves(node, tmp_path)
    finally:
        node.stop()
