"""Leftovers of crashes settled by the leading listener, and never another receiver's files."""

import os
import threading
import time

import pytest

from dicom_node.listener import Listener
from dicom_node.reconcile import ORPHAN_REASON
from testkit import synthetic
from testkit.peers import free_port, storescu, wait_until
from tests.dicom_node.test_capacity import rows, running
from triage.records import storage
from triage.records.tables import Instance, QuarantinedObject, StudyVersion

pytestmark = pytest.mark.integration


def aged(path, seconds=7200):
    past = time.time() - seconds
    os.utime(path, (past, past))
    return path


def test_leftovers_are_adopted_into_quarantine_or_removed_and_fresh_files_kept(make_settings, tmp_path):
    settings = make_settings(leftover_grace_seconds=60)
    # What a crashed listener left: a durable file whose row never committed, a cross-device copy
    # that never got its rename, a loose partial file, result staging, and a dead receiver's folder.
    ds = synthetic.dx()
    [source] = synthetic.write([ds], tmp_path / "in")
    key = storage.instance_key(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    orphan = settings.storage_dir / key
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(source.read_bytes())
    aged(orphan)
    partial_copy = aged(_write(orphan.parent / f".{orphan.name}.partial"))
    loose = aged(_write(settings.incoming_dir / "tmpabc"))
    fresh = _write(settings.incoming_dir / "tmpnew")  # might be anyone's: younger than the grace
    staging = aged(_write(settings.results_dir / "incoming" / "1.2.3.dcm"))
    dead_receiver = settings.incoming_dir / "otherhost-123-deadbeef"
    _write(dead_receiver / ".receiving")
    _write(dead_receiver / "tmpxyz")

    with running(settings) as node:
        wait_until(lambda: rows(node, QuarantinedObject), timeout=10)
        [kept] = rows(node, QuarantinedObject)
        assert kept.reason == ORPHAN_REASON and kept.sop_instance_uid == ds.SOPInstanceUID
        assert storage.sha256_of(settings.quarantine_dir / kept.storage_key) == storage.sha256_of(source)
        assert not orphan.exists() and not partial_copy.exists()
        assert not loose.exists() and not staging.exists() and not dead_receiver.exists()
        assert fresh.exists()
        assert rows(node, Instance) == []
        # The sender, told to retry, sends it again: it is stored as any instance is.
        assert storescu(node.port, source).returncode == 0
        [instance] = rows(node, Instance)
        assert storage.sha256_of(settings.storage_dir / instance.storage_key) == instance.sha256


def _write(path, data=b"leftover"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_second_listener_on_the_same_home_neither_leads_nor_touches_the_first_ones_files(
    make_settings, tmp_path
):
    first_settings = make_settings(dicom_port=free_port())
    second_settings = make_settings(dicom_port=free_port())
    with running(first_settings) as first:
        assert first.leading
        in_flight = _write(first.handlers.receiving.path / "tmpinflight", b"half an instance")
        with running(second_settings) as second:
            assert not second.leading, "one process leads over a database"
            assert in_flight.exists(), "a live receiver's in-flight file is never removed"
            # Both receive; only the leader completes and queues studies.
            assert storescu(second.port, *synthetic.write([synthetic.dx()], tmp_path / "a")).returncode == 0
            wait_until(
                lambda: rows(first, StudyVersion) and rows(first, StudyVersion)[0].state != "RECEIVING"
            )
        assert in_flight.exists()
    with running(second_settings) as second:
        assert second.leading
        assert not first.handlers.receiving.path.exists(), "a clean stop removes its own folder"


def test_the_lead_passes_to_a_waiting_listener_when_the_leader_stops(make_settings):
    first = Listener(make_settings(dicom_port=free_port()))
    first.start()
    second = Listener(make_settings(dicom_port=free_port()))
    second.start()
    try:
        assert first.leading and not second.leading
        dead_folder = first.handlers.receiving.path
        first.stop()
        wait_until(lambda: second.leading, timeout=10)
        assert not dead_folder.exists()
    finally:
        second.stop()


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_one_leader_per_database_and_the_lead_passes_on(engine, settings, tmp_path, request):
    from triage.records.db import Database, migrate
    from triage.records.leadership import Leadership

    url = settings.resolved_database_url if engine == "sqlite" else request.getfixturevalue("postgres_url")
    migrate(url)
    databases = [Database(url), Database(url)]
    first, second = (Leadership(db, tmp_path / "leader.lock") for db in databases)
    try:
        assert first.try_acquire() and first.still_held()
        assert not second.try_acquire()
        first.release()
        assert not first.held
        assert second.try_acquire(), "released, the lock goes to the next who asks"
        assert not first.try_acquire()
        # A leader that stops renewing (its process hung, or its host died): the lease lapses.
        stale = Leadership(databases[0], tmp_path / "stale.lock", lease_seconds=1)
        second.release()
        assert stale.try_acquire()
        if engine == "postgresql":
            assert not first.try_acquire(), "the lease runs"
            wait_until(lambda: first.try_acquire(), timeout=10)
            assert not stale.still_held(), "the old leader finds out it lost the lead"
    finally:
        first.release()
        second.release()
        for db in databases:
            db.dispose()


def test_storage_is_walked_for_orphans_a_few_folders_a_step(make_settings, tmp_path):
    """Five study folders, each with an orphan: two folders a step, so three steps, the last one
    ending the walk; the next starts a new walk, which finds nothing more."""
    settings = make_settings(leftover_grace_seconds=60)
    for _ in range(5):
        ds = synthetic.dx()
        key = storage.instance_key(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        aged(_write(settings.storage_dir / key))
    node = Listener(settings)
    try:
        steps = [node.reconciler.orphans_step(2) for _ in range(3)]
        assert steps == [(2, False), (2, False), (1, True)]
        assert node.reconciler.orphans() == 0, "a new walk, from the start"
        assert len(rows(node, QuarantinedObject)) == 5
    finally:
        node.database.dispose()


def test_the_study_monitor_goes_on_while_storage_is_walked(make_settings, tmp_path):
    """A walk of a storage of millions of files, stuck here in one step: studies still complete."""
    walking, release = threading.Event(), threading.Event()

    class SlowWalk:
        def __init__(self, reconciler):
            self._reconciler = reconciler

        def receptions(self):
            return self._reconciler.receptions()

        def staging(self):
            return 0

        def orphans_step(self, folders):
            walking.set()
            release.wait(60)
            return 0, True

        def run(self):
            return self.orphans_step(0)

    node = Listener(make_settings())
    node.reconciler = SlowWalk(node.reconciler)
    node.start()
    try:
        assert walking.wait(10), "the walk started"
        [path] = synthetic.write([synthetic.dx()], tmp_path / "in")
        assert storescu(node.port, path).returncode == 0
        wait_until(lambda: [v.state for v in rows(node, StudyVersion)] == ["QUEUED"], timeout=20)
    finally:
        release.set()
        node.stop()


def test_an_orphan_in_quarantine_does_not_make_its_study_conflicting(database):
    """A durable file without a row was never answered: its sender sends it again, and the study it
    names is not flagged as missing a refused instance (an instance refused with a status is)."""
    from sqlalchemy import select

    from tests.dicom_node.test_studies import T0, receive
    from triage.records import store
    from triage.records.tables import Study

    orphaned, refused = synthetic.dx(), synthetic.dx()
    with database.session() as session:
        for ds, reason in ((orphaned, ORPHAN_REASON), (refused, "cannot be parsed")):
            store.add_quarantined(
                session, storage_key=f"q/{ds.SOPInstanceUID}", sha256="0" * 64, calling_ae_title="",
                reason=reason, now=T0, sop_instance_uid=str(ds.SOPInstanceUID),
                study_instance_uid=str(ds.StudyInstanceUID),
            )  # fmt: skip
    receive(database, [orphaned, refused], T0)
    with database.session() as session:
        conflict = {s.study_instance_uid: s.conflict for s in session.scalars(select(Study))}
    assert conflict == {str(orphaned.StudyInstanceUID): False, str(refused.StudyInstanceUID): True}
