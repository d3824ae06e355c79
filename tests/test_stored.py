"""The one reader of stored instances: what it refuses, and why, in sentences with no patient data."""

import tracemalloc

import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian

from testkit import synthetic
from triage.records.storage import sha256_of
from triage.stored import StoredUnreadable, open_stored


def stored(settings, ds):
    payload = synthetic.store([ds], settings.storage_dir, "fracture")
    [ref] = payload.instances
    return ref.storage_key, sha256_of(settings.storage_dir / ref.storage_key)


def test_an_instance_is_read_when_its_bytes_are_the_ones_received(settings):
    ds = synthetic.dx()
    key, sha256 = stored(settings, ds)
    assert open_stored(settings.storage_dir, key, sha256, settings.home).SOPInstanceUID == ds.SOPInstanceUID


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("outside", "its storage key points outside storage"),
        ("missing", "it is missing from storage"),
        ("changed", "it changed on disk since it was received"),
        ("garbage", "it cannot be parsed"),
    ],
)
def test_what_it_refuses(settings, change, why):
    key, sha256 = stored(settings, synthetic.dx())
    path = settings.storage_dir / key
    if change == "outside":
        key = "../../etc/passwd"
    elif change == "missing":
        path.unlink()
    elif change == "changed":
        path.write_bytes(path.read_bytes()[:-2] + b"\0\0")
    else:
        path.write_bytes(b"not a DICOM file at all")
        sha256 = None
    with pytest.raises(StoredUnreadable, match=why):
        open_stored(settings.storage_dir, key, sha256, settings.home)


def test_a_deflated_instance_is_inflated_under_a_cap_never_whole_in_memory(settings):
    """8 MiB of zeros, some 8 KiB deflated, under a 4 MiB cap: refused with why, at a 6 MiB peak."""
    from tests.dicom_node.test_hostile import big_private

    fine = synthetic.dx()
    fine.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    key, sha256 = stored(settings, fine)
    assert open_stored(settings.storage_dir, key, sha256, settings.home).SOPInstanceUID == fine.SOPInstanceUID
    bomb_key, bomb_sha256 = stored(settings, big_private(DeflatedExplicitVRLittleEndian, 8 << 20))
    assert (settings.storage_dir / bomb_key).stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(StoredUnreadable, match="inflates past the 4194304 bytes allowed"):
            open_stored(
                settings.storage_dir, bomb_key, bomb_sha256, settings.home, max_inflated_bytes=4 << 20
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 << 20  # never the 8 MiB inflated
    assert not list(settings.home.glob(".inflate-*")), "the inflated copy is gone"
