"""Disk pressure: below the watermark nothing is acknowledged that could not be made durable.

The burst test fills a real, small tmpfs (CI runs as root); the others set the watermark or the
quarantine quota so that the limit is already reached.
"""

import contextlib
import os
import subprocess

import pytest
from fastapi.testclient import TestClient
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian
from pynetdicom import AE
from sqlalchemy import select

from dicom_node.listener import Listener
from dicom_node.status import Status
from testkit import synthetic
from testkit.peers import PEER_ENV, require_tool, storescu
from triage.records import storage
from triage.records.tables import Instance, QuarantinedObject
from worklist.app import create_app

pytestmark = pytest.mark.integration

MiB = 1 << 20


def rows(node, model):
    with node.database.session() as session:
        return list(session.scalars(select(model).order_by(model.id)))


@contextlib.contextmanager
def running(settings):
    node = Listener(settings)
    node.start()
    try:
        yield node
    finally:
        node.stop()


def assert_every_acknowledged_instance_is_durable(node, acknowledged):
    """Invariant 1 of the safety suite: answered 0x0000 means on disk, with its hash and its row."""
    stored = {row.sop_instance_uid: row for row in rows(node, Instance)}
    for uid in acknowledged:
        row = stored[uid]
        assert storage.sha256_of(node.settings.storage_dir / row.storage_key) == row.sha256


def test_below_the_watermark_associations_are_rejected_as_transient(make_settings, tmp_path):
    settings = make_settings(storage_min_free_bytes=1 << 62)  # more than any disk has free
    [path] = synthetic.write([synthetic.dx()], tmp_path / "in")
    with running(settings) as node:
        result = storescu(node.port, path)
        assert result.returncode != 0
        assert "Rejected Transient" in result.stderr + result.stdout, result.stderr
        echo = subprocess.run(
            [require_tool("echoscu"), "-aet", "ECHOSCU", "-aec", "TRIAGE", "127.0.0.1", str(node.port)],
            capture_output=True,
            text=True,
            env=PEER_ENV,
            timeout=30,
            check=False,
        )
        assert echo.returncode != 0, "a node that cannot store says so at association time"
        assert rows(node, Instance) == []
        assert node.handlers.receiving.partial_files() == []
        (settings.queue_dir / "messages").mkdir(parents=True, exist_ok=True)
        with TestClient(create_app(node.database, settings)) as client:
            ready = client.get("/readyz")
    assert ready.status_code == 200, "the worklist still serves radiologists"
    assert ready.json()["storage"] == "degraded"


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MiB tmpfs: a disk that really fills up."""
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs and needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def send(port, datasets):
    """One association, one C-STORE per data set; the status each got (None: association refused)."""
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
    if not assoc.is_established:
        return None
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


def test_a_burst_that_fills_the_disk_loses_nothing_and_resumes_when_space_returns(make_settings, small_disk):
    settings = make_settings(home=small_disk / "home", storage_min_free_bytes=10 * MiB)
    ids = synthetic.StudyIds()
    burst = [synthetic.dx(ids, rows=724, columns=724, bits=16, seed=n, instance_number=n) for n in range(16)]
    with running(settings) as node:
        statuses = send(node.port, burst)
        assert statuses is not None
        acknowledged = [ds.SOPInstanceUID for ds, status in zip(burst, statuses, strict=True) if status == 0]
        refused = [ds for ds, status in zip(burst, statuses, strict=True) if status != 0]
        assert 3 <= len(acknowledged) < len(burst), statuses
        assert {status for status in statuses if status != 0} == {Status.OUT_OF_RESOURCES}
        assert statuses == sorted(statuses), "once full, every later instance is refused"
        assert_every_acknowledged_instance_is_durable(node, acknowledged)
        assert len(rows(node, Instance)) == len(acknowledged)
        # Something else on the host takes a few MiB more: now even a new association is refused.
        (small_disk / "filler").write_bytes(bytes(3 * MiB))
        assert send(node.port, refused) is None, "a new association is refused while the disk is low"

        subprocess.run(["mount", "-o", "remount,size=64m", "tmpfs", str(small_disk)], check=True)
        assert send(node.port, refused) == [0] * len(refused), "the sender's retry is taken"
        assert_every_acknowledged_instance_is_durable(node, [ds.SOPInstanceUID for ds in burst])
        assert node.handlers.receiving.partial_files() == []


def test_past_the_quarantine_quota_a_conflict_is_refused_not_acknowledged(make_settings, tmp_path):
    settings = make_settings(quarantine_quota_bytes=0)
    ids = synthetic.StudyIds()
    first = synthetic.dx(ids, seed=1)
    changed = synthetic.dx(ids, seed=2, sop_instance_uid=first.SOPInstanceUID)
    with running(settings) as node:
        assert send(node.port, [first]) == [0]
        # A conflicting duplicate is acknowledged only when it can be kept for an admin to compare.
        assert send(node.port, [changed]) == [Status.OUT_OF_RESOURCES]
        assert rows(node, QuarantinedObject) == []
        malformed = synthetic.dx(ids)
        del malformed.SeriesInstanceUID
        # A refused object keeps its failure status; the sender still has it, so nothing is lost.
        assert send(node.port, [malformed]) == [Status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS]
        assert rows(node, QuarantinedObject) == []
        assert list(settings.quarantine_dir.iterdir()) == []
        assert_every_acknowledged_instance_is_durable(node, [first.SOPInstanceUID])


def test_an_instance_that_fills_the_disk_while_it_arrives_is_refused_and_the_association_lives(
    make_settings, small_disk
):
    settings = make_settings(home=small_disk / "home", storage_min_free_bytes=0)
    ids = synthetic.StudyIds()
    too_big = synthetic.dx(ids, rows=4096, columns=4096, bits=16, seed=1)  # 32 MiB on a 24 MiB disk
    small = synthetic.dx(ids, seed=2)
    with running(settings) as node:
        assert send(node.port, [too_big, small]) == [Status.OUT_OF_RESOURCES, 0]
        assert [row.sop_instance_uid for row in rows(node, Instance)] == [small.SOPInstanceUID]
        assert node.handlers.receiving.partial_files() == [], "the partial file gave its space back"


def test_an_instance_over_the_size_cap_is_refused_before_it_is_stored(make_settings):
    settings = make_settings(max_instance_bytes=MiB)
    ids = synthetic.StudyIds()
    large = synthetic.dx(ids, rows=1024, columns=1024, bits=16, seed=1)  # 2 MiB
    small = synthetic.dx(ids, seed=2)
    with running(settings) as node:
        assert send(node.port, [large, small]) == [Status.OUT_OF_RESOURCES, 0]
        assert [row.sop_instance_uid for row in rows(node, Instance)] == [small.SOPInstanceUID]
