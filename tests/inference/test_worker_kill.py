"""A worker killed mid-analysis, for real: SIGKILL of the `triage worker`
process and its pool, as the OOM killer does. The listener's monitor sees the lease run out, queues
the study again, and a second worker analyses it; nothing is recorded twice."""

import os
import signal
from pathlib import Path

import pytest
from sqlalchemy import select

from testkit import synthetic
from testkit.peers import free_port, start_triage, stop, storescu, wait_until
from triage.records.db import Database
from triage.records.tables import Result, StateChange, StudyState, StudyVersion

pytestmark = pytest.mark.integration


def children(pid):
    """The process ids whose parent is ``pid`` (Celery's prefork pool)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def kill_tree(process):
    for child in children(process.pid):
        os.kill(child, signal.SIGKILL)
    process.kill()
    process.wait()


def version(database):
    with database.session() as session:
        return session.scalars(select(StudyVersion)).first()


def test_a_worker_killed_mid_analysis_loses_the_study_to_the_next_worker(make_settings, tmp_path):
    settings = make_settings(dicom_port=free_port())
    lease = {"TRIAGE_ANALYSIS_LEASE_SECONDS": "8"}  # the monitor (listener) judges the lease
    listener = start_triage("listener", settings, tmp_path / "listener.log", **lease)
    first = start_triage(
        "worker", settings, tmp_path / "worker-1.log", TRIAGE_FAULT_HOLD_AFTER_CLAIM_SECONDS="600", **lease
    )
    second = None
    try:
        wait_until(lambda: "DICOM listener" in (tmp_path / "listener.log").read_text(), timeout=60)
        [path] = synthetic.write([synthetic.dx()], tmp_path / "study")
        assert storescu(settings.dicom_port, path).returncode == 0
        database = Database(settings.resolved_database_url)
        wait_until(
            lambda: (v := version(database)) is not None and v.state == StudyState.ANALYSING, timeout=120
        )
        wait_until(lambda: "holding study version" in (tmp_path / "worker-1.log").read_text(), timeout=30)
        kill_tree(first)  # mid-analysis: claimed, nothing recorded
        second = start_triage("worker", settings, tmp_path / "worker-2.log", **lease)
        working = (StudyState.ANALYSING, StudyState.QUEUED)
        done = wait_until(
            lambda: (v := version(database)) is not None and v.state not in working and v, timeout=180
        )
        assert done.state == StudyState.ANALYSED, (done.state, done.reason)
        with database.session() as session:
            claims = session.scalars(
                select(StateChange).where(StateChange.state == StudyState.ANALYSING)
            ).all()
            assert len(claims) == 2  # the lost claim, then the second worker's
            assert len(session.scalars(select(Result)).all()) == 1
        database.dispose()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                kill_tree(process)
        stop(listener)
