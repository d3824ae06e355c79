import hashlib

from pynetdicom import dimse_messages

from dicom_node.spool import Spools


def test_spool_hashes_what_pynetdicom_writes_into_it(tmp_path):
    spools = Spools(tmp_path)
    spool = spools(delete=False, mode="wb", suffix=".dcm")  # as pynetdicom opens it
    chunks = [b"\x00" * 128, b"DICM", bytes(range(256)) * 1000]
    for chunk in chunks:
        spool.write(chunk)
        spool.file.flush()
    spool.close()
    path = tmp_path / spool.name
    assert path.parent == tmp_path
    assert path.read_bytes() == b"".join(chunks)
    assert spools.sha256(path) == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert spools.sha256(path) is None, "a spool's hash is handed out once"


def test_listener_installs_its_spools_into_pynetdicom(listener):
    assert dimse_messages.NamedTemporaryFile is listener.handlers.spools
