"""A real PACS (Orthanc) pushes a study to triage over DICOM."""

import pytest
from sqlalchemy import select

from testkit import synthetic
from testkit.peers import Orthanc, wait_until
from triage.records.tables import Instance, StudyState, StudyVersion

pytestmark = pytest.mark.integration


@pytest.fixture
def orthanc(tmp_path, listener):
    pacs = Orthanc(tmp_path / "orthanc", {"triage": ("TRIAGE", "127.0.0.1", listener.port)})
    yield pacs
    pacs.stop()


def test_orthanc_pushes_a_screen_that_is_stored_and_queued(orthanc, listener, tmp_path):
    views = synthetic.screen()
    study_id = {
        orthanc.upload(path)["ParentStudy"] for path in synthetic.write(views, tmp_path / "screen")
    }.pop()
    job = orthanc.request("POST", "/modalities/triage/store", {"Resources": [study_id], "Synchronous": True})
    assert job["FailedInstancesCount"] == 0 and job["InstancesCount"] == 4

    with listener.database.session() as session:
        instances = list(session.scalars(select(Instance)))
    assert sorted(i.sop_instance_uid for i in instances) == sorted(ds.SOPInstanceUID for ds in views)
    assert {i.calling_ae_title for i in instances} == {"ORTHANC"}

    def queued():
        with listener.database.session() as session:
            return session.scalars(select(StudyVersion.state)).all() == [StudyState.QUEUED]

    wait_until(queued, timeout=10)


def test_orthanc_echo_reaches_triage(orthanc):
    assert orthanc.request("POST", "/modalities/triage/echo", b"{}") == {}
