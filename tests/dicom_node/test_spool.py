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


def test_a_full_disk_at_pynetdicoms_own_flush_fails_the_spool_instead_of_the_association(tmp_path):
    """pynetdicom flushes ``spool.file`` after each fragment; on a full disk the buffered write
    succeeded and the flush raises ENOSPC, which would abort the association. The spool empties
    itself and says why, so that the handler answers Out of Resources."""
    import errno

    class FullDisk:
        def __init__(self, real):
            self.real = real

        def write(self, data):
            return self.real.write(data)

        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device")

        def seek(self, *args):
            return self.real.seek(*args)

        def truncate(self, *args):
            return self.real.truncate(*args)

    spool = Spools(tmp_path)(delete=False)
    spool._raw = FullDisk(spool._raw)  # the disk fills between the write and pynetdicom's flush
    spool.write(b"x" * 1000)
    spool.file.flush()
    assert spool.failure == "it could not be written: No space left on device"
    assert spool.write(b"more") == 4, "a failed spool takes no more bytes, and raises nothing"
    spool.close()
