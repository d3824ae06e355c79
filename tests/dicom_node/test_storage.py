import hashlib
import os

import pytest

from triage.records import storage


def test_instance_key_refuses_anything_but_uids():
    assert storage.instance_key("1.2", "1.2.3", "1.2.3.4") == "1.2/1.2.3/1.2.3.4.dcm"
    for bad in ("../etc", "1.2/3", "", "1.2.", "a.b"):
        with pytest.raises(ValueError, match="is not a DICOM UID"):
            storage.instance_key(bad, "1.2", "1.3")


def test_make_durable_moves_into_place_and_replaces_an_orphan(tmp_path):
    source = tmp_path / "incoming" / "tmp1.dcm"
    source.parent.mkdir()
    source.write_bytes(b"new content")
    root = tmp_path / "storage"
    (root / "1.2" / "1.3").mkdir(parents=True)
    (root / "1.2" / "1.3" / "1.4.dcm").write_bytes(b"orphan of a crashed store")
    target = storage.make_durable(source, root, "1.2/1.3/1.4.dcm")
    assert target.read_bytes() == b"new content" and not source.exists()


def test_make_durable_across_filesystems_still_ends_with_a_rename(tmp_path):
    shm = "/dev/shm"
    if not os.path.isdir(shm) or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.fail("this test needs /dev/shm on another filesystem than the temporary folder")
    source = os.path.join(shm, f"triage-test-{os.getpid()}.dcm")
    with open(source, "wb") as stream:
        stream.write(b"x" * 100_000)
    from pathlib import Path

    target = storage.make_durable(Path(source), tmp_path / "storage", "1.2/1.3/1.4.dcm")
    assert not os.path.exists(source)
    assert storage.sha256_of(target) == hashlib.sha256(b"x" * 100_000).hexdigest()
    assert [p.name for p in target.parent.iterdir()] == ["1.4.dcm"]
