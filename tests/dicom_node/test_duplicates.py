"""A duplicate in other bytes, compared by what it shows: a PACS that re-sends an
instance in another transfer syntax sends the same image, and the study is analysed; other pixels,
another patient or a lossy syntax stay a conflict for an admin. Sent with DCMTK's storescu."""

import copy

import pytest
from pydicom.uid import JPEGLSNearLossless, RLELossless
from sqlalchemy import select

from testkit import synthetic
from testkit.peers import storescu, wait_until
from triage.records.tables import AuditEvent, Comparison, QuarantinedObject, Study, StudyState, StudyVersion

pytestmark = pytest.mark.integration


def rows(listener, model):
    with listener.database.session() as session:
        return list(session.scalars(select(model).order_by(model.id)))


def send_twice(listener, tmp_path, change, propose=("-xr",)):
    original = synthetic.dx(synthetic.StudyIds(), seed=3)
    [first] = synthetic.write([original], tmp_path / "first")
    assert storescu(listener.port, first).returncode == 0
    resent = change(copy.deepcopy(original))
    [again] = synthetic.write([resent], tmp_path / "again")
    sent = storescu(listener.port, again, extra=propose)  # -xr RLE, -xu JPEG-LS lossy: the file's own
    assert sent.returncode == 0, sent.stderr
    return wait_until(lambda: next((r for r in rows(listener, QuarantinedObject)
                                    if r.comparison != Comparison.PENDING), None), timeout=30)  # fmt: skip


def test_a_resend_in_another_lossless_syntax_is_the_same_image_and_the_study_is_analysed(listener, tmp_path):
    def transcode(ds):
        ds.compress(RLELossless, generate_instance_uid=False)  # pydicom would make it another instance
        return ds

    compared = send_twice(listener, tmp_path, transcode)
    assert compared.comparison == Comparison.SAME, compared.reason
    assert "the same image in another transfer syntax" in compared.reason
    assert not rows(listener, Study)[0].conflict
    settled = (StudyState.RECEIVING, StudyState.COMPLETE)
    queued = wait_until(
        lambda: next((v for v in rows(listener, StudyVersion) if v.state not in settled), None), timeout=30
    )
    assert queued.state != StudyState.NOT_ANALYSED, queued.reason
    with listener.database.session() as session:
        cleared = session.scalars(
            select(AuditEvent.detail).where(AuditEvent.action == "conflict.cleared")
        ).all()
    assert len(cleared) == 1 and "re-sent" in cleared[0]


def another_patient(ds):
    ds.PatientID = "SOMEONE-ELSE"
    return ds


def other_pixels(ds):
    ids = synthetic.StudyIds(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    return synthetic.dx(ids, seed=4, sop_instance_uid=ds.SOPInstanceUID)


def near_lossless(ds):
    ds.compress(JPEGLSNearLossless, jls_error=2, generate_instance_uid=False)
    return ds


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (another_patient, "attributes differ: PatientID"),
        (other_pixels, "the decoded pixels differ"),
        (near_lossless, "is lossy"),
    ],
    ids=["another-patient", "other-pixels", "lossy"],
)
def test_anything_else_stays_a_conflict(listener, tmp_path, change, why):
    compared = send_twice(listener, tmp_path, change, ("-xu",) if change is near_lossless else ())
    assert compared.comparison == Comparison.DIFFERS and why in compared.reason
    assert rows(listener, Study)[0].conflict
    version = wait_until(
        lambda: next((v for v in rows(listener, StudyVersion) if v.state == StudyState.NOT_ANALYSED), None)
    )
    assert "conflicting duplicate" in version.reason
