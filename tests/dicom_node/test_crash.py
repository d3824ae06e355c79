"""Crash safety: SIGKILL the listener in the middle of a study, restart it, resend everything."""

import re
import threading

import pytest
from pydicom.uid import DigitalMammographyXRayImageStorageForPresentation, ExplicitVRLittleEndian
from pynetdicom import AE
from sqlalchemy import select

from testkit import synthetic
from testkit.peers import REPO, free_port, start_triage, stop, storescu, wait_until
from triage.records import storage
from triage.records.db import Database
from triage.records.tables import Instance, OutboxMessage, StateChange, StudyState, StudyVersion

pytestmark = pytest.mark.integration


def send_until_killed(port, paths, acknowledged, killed):
    """Send one instance per C-STORE and remember which ones got Success, until the peer dies."""
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(DigitalMammographyXRayImageStorageForPresentation, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
    assert assoc.is_established
    for path in paths:
        if killed.is_set() or not assoc.is_established:  # the listener died under us: expected
            break
        try:
            response = assoc.send_c_store(path)
        except RuntimeError:  # "association must be established": the kill landed mid-send
            break
        if response and response.get("Status") == 0x0000:
            acknowledged.append(path)
    if assoc.is_established:
        assoc.release()


def test_acknowledged_instances_survive_sigkill_and_nothing_runs_twice(make_settings, tmp_path):
    routing_file = tmp_path / "routing.yaml"  # a quiet period longer than the restart takes
    routing_file.write_text(
        re.sub(
            r"quiet_period_seconds: [0-9.]+",
            "quiet_period_seconds: 20",
            (REPO / "configs" / "routing.yaml").read_text(),
        )
    )
    settings = make_settings(dicom_port=free_port(), routing_file=routing_file)
    views = synthetic.screen(rows=2048, columns=1664)  # ~6.8 MB each, so the kill lands mid-transfer
    paths = synthetic.write(views, tmp_path / "screen")
    listener = start_triage("listener", settings, tmp_path / "listener-1.log")
    wait_until(
        lambda: (
            (settings.home / "triage.db").exists()
            and "DICOM listener" in (tmp_path / "listener-1.log").read_text()
        ),
        timeout=30,
    )

    acknowledged: list = []
    killed = threading.Event()
    sender = threading.Thread(
        target=send_until_killed, args=(settings.dicom_port, paths, acknowledged, killed)
    )
    sender.start()
    wait_until(lambda: len(acknowledged) >= 2, timeout=30, interval=0.001)
    listener.kill()  # SIGKILL: no handler, no cleanup, mid-study
    listener.wait()
    killed.set()
    sender.join(30)
    assert 2 <= len(acknowledged) < len(paths), "the kill should land before the study is complete"

    database = Database(settings.resolved_database_url)
    with database.session() as session:
        stored = {i.sop_instance_uid: i for i in session.scalars(select(Instance))}
    for path in acknowledged:
        instance = stored[path.stem]  # every acknowledged instance: row, file, matching hash
        assert storage.sha256_of(settings.storage_dir / instance.storage_key) == instance.sha256

    listener = start_triage("listener", settings, tmp_path / "listener-2.log")
    worker = start_triage("worker", settings, tmp_path / "worker.log")
    try:
        wait_until(lambda: storescu(settings.dicom_port, *paths).returncode == 0, timeout=30, interval=0.5)
        wait_until(lambda: _states(database) == [StudyState.ANALYSED], timeout=120)
    finally:
        stop(listener)
        stop(worker)
    assert list(settings.incoming_dir.iterdir()) == [], "partial receptions are cleaned at restart"
    with database.session() as session:
        instances = list(session.scalars(select(Instance)))
        claims = session.scalars(select(StateChange).where(StateChange.state == StudyState.ANALYSING)).all()
        messages = session.scalars(select(OutboxMessage)).all()
    assert sorted(i.sop_instance_uid for i in instances) == sorted(p.stem for p in paths)
    for instance in instances:
        assert storage.sha256_of(settings.storage_dir / instance.storage_key) == instance.sha256
    assert len(messages) == 1 and len(claims) == 1, "the study was queued and analysed exactly once"


def _states(database):
    with database.session() as session:
        return list(session.scalars(select(StudyVersion.state)))
