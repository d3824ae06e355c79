"""Images on the study page: frame 0 of a multi-frame image alone, decoded under
the cap for one frame; rendered once and answered from memory after that, audited every time."""

import numpy as np
import pytest
from fastapi.testclient import TestClient

from testkit import synthetic
from tests.worklist import seed
from tests.worklist.test_api import audit_rows, signed_in
from triage.records.db import utcnow
from triage.records.tables import Instance, Role, StudyState
from worklist.app import create_app
from worklist.images import RenderCache, Rendered


def tomosynthesis_like(frames):
    """A DX instance with ``frames`` frames: one is small, all of them are past the decoding cap."""
    ds = synthetic.dx()
    frame = ds.pixel_array
    ds.NumberOfFrames = frames
    ds.PixelData = np.repeat(frame[np.newaxis], frames, axis=0).tobytes()
    return ds


@pytest.fixture
def page(database, make_settings):
    settings = make_settings()
    (settings.queue_dir / "messages").mkdir(parents=True, exist_ok=True)
    with TestClient(create_app(database, settings)) as client:
        yield client, settings, signed_in(client, database, "rad", Role.RADIOLOGIST)


def test_a_multi_frame_image_shows_its_first_frame_within_the_cap_for_one(page, database, monkeypatch):
    client, settings, headers = page
    frames = 600  # 64 x 64 x 2 bytes x 600 = 4.7 MiB; the cap below is 1 MiB
    monkeypatch.setattr("triage.imaging.MAX_DECODED_BYTES", 1 << 20)
    monkeypatch.setattr("triage.imaging.check_decoded_size.__defaults__", (1 << 20, False))
    ds = tomosynthesis_like(frames)
    study = seed.add_study(database, settings, [ds], pipeline="fracture", state=StudyState.NOT_ANALYSED,
                           reason="tomosynthesis is not analysed", at=utcnow())  # fmt: skip
    response = client.get(
        f"/api/studies/{study}/images/{ds.SOPInstanceUID}", params={"size": 64}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-frames"] == str(frames)
    assert (response.headers["x-source-columns"], response.headers["x-source-rows"]) == ("64", "64")


def test_an_image_is_rendered_once_and_every_view_is_audited(page, database):
    client, settings, headers = page
    ds = synthetic.dx()
    study = seed.add_study(database, settings, [ds], pipeline="fracture", state=StudyState.NOT_ANALYSED,
                           reason="test", at=utcnow())  # fmt: skip
    url = f"/api/studies/{study}/images/{ds.SOPInstanceUID}"
    first = client.get(url, params={"size": 128}, headers=headers)
    assert first.status_code == 200
    with database.session() as session:
        key = session.query(Instance).filter_by(sop_instance_uid=ds.SOPInstanceUID).one().storage_key
    (settings.storage_dir / key).unlink()  # the second answer cannot come from the file
    again = client.get(url, params={"size": 128}, headers=headers)
    assert again.status_code == 200 and again.content == first.content
    assert client.get(url, params={"size": 256}, headers=headers).status_code == 422  # another size: rendered
    assert len(audit_rows(database, "image.viewed")) == 3


def test_the_cache_holds_at_most_its_bytes_least_recently_used_out():
    cache = RenderCache(max_bytes=250)
    made = []

    def render(name):
        def make():
            made.append(name)
            return Rendered(b"x" * 100, 1, 1, 1)

        return make

    for name in ("a", "b", "a", "c", "a", "b"):
        cache.get(name, 64, render(name))
    assert made == ["a", "b", "c", "b"]  # c pushed out b (a was used last); b rendered again
    assert RenderCache(0).get("a", 64, render("a")).png == b"x" * 100 and made[-1] == "a"


def test_only_routed_images_are_shown_and_nothing_else_is_decoded(page, database):
    client, settings, headers = page
    routed, other = synthetic.dx(), synthetic.dx()
    study = seed.add_study(database, settings, [routed], pipeline="fracture", state=StudyState.NOT_ANALYSED,
                           reason="test", at=utcnow())  # fmt: skip
    other.StudyInstanceUID, other.SeriesInstanceUID = routed.StudyInstanceUID, routed.SeriesInstanceUID
    seed.add_study(
        database,
        settings,
        [other],
        pipeline="fracture",
        state=StudyState.NOT_ANALYSED,
        reason="test",
        at=utcnow(),
        routed=False,
    )  # fmt: skip  (the same study, not routed)
    detail = client.get(f"/api/studies/{study}", headers=headers).json()
    shown = {i["sop_instance_uid"]: i["shown"] for i in detail["instances"]}
    assert shown == {routed.SOPInstanceUID: True, other.SOPInstanceUID: False}
    refused = client.get(f"/api/studies/{study}/images/{other.SOPInstanceUID}", headers=headers)
    assert refused.status_code == 404 and "only the images it routes" in refused.json()["detail"]


def test_an_image_changed_on_disk_since_it_was_received_is_not_shown(page, database):
    """The page reads stored images through the one reader: the bytes must be those received."""
    client, settings, headers = page
    ds = synthetic.dx()
    study = seed.add_study(database, settings, [ds], pipeline="fracture", state=StudyState.NOT_ANALYSED,
                           reason="test", at=utcnow())  # fmt: skip
    with database.session() as session:
        key = session.query(Instance).filter_by(sop_instance_uid=ds.SOPInstanceUID).one().storage_key
    path = settings.storage_dir / key
    path.write_bytes(path.read_bytes()[:-4] + b"\xff\xff\xff\xff")  # a few pixels, changed in place
    shown = client.get(f"/api/studies/{study}/images/{ds.SOPInstanceUID}", headers=headers)
    assert shown.status_code == 422 and "changed on disk since it was received" in shown.json()["detail"]


def test_the_reading_viewer_gets_the_values_at_full_depth_with_their_window(page, database):
    """Not an 8-bit rendering: a 12-bit ramp keeps its 4,096 levels (sized down by area averaging),
    with the header's window in modality units, MONOCHROME1 and the row direction said."""
    client, settings, headers = page
    ds = synthetic.dx()
    ramp = np.tile(np.arange(4096, dtype=np.uint16), (8, 1))  # 8 x 4096: every 12-bit value
    ds.Rows, ds.Columns = ramp.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = ramp.tobytes()
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 500, 1000
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.PatientOrientation = ["P", "F"]
    study = seed.add_study(database, settings, [ds], pipeline="fracture", state=StudyState.NOT_ANALYSED,
                           reason="test", at=utcnow())  # fmt: skip
    url = f"/api/studies/{study}/images/{ds.SOPInstanceUID}/pixels"
    found = client.get(url, params={"size": 4096}, headers=headers)
    assert found.status_code == 200, found.text
    values = np.frombuffer(found.content, dtype="<u2")
    assert found.headers["x-rows"] == "8" and found.headers["x-columns"] == "4096"
    assert len(np.unique(values)) == 4096, "every level kept, where 8 bits would keep 256"
    offset, scale = float(found.headers["x-value-offset"]), float(found.headers["x-value-scale"])
    assert (offset, scale) == (-1024.0, 1.0) and values.max() * scale + offset == 4095 - 1024
    assert (found.headers["x-window-center"], found.headers["x-window-width"]) == ("500", "1000")
    assert found.headers["x-invert"] == "1" and found.headers["x-row-direction"] == "P"
    smaller = client.get(url, params={"size": 1024}, headers=headers)
    assert smaller.headers["x-columns"] == "1024" and smaller.headers["x-source-columns"] == "4096"
    assert len(np.unique(np.frombuffer(smaller.content, dtype="<u2"))) == 1024, "area averages, not 8 bits"
    assert len(audit_rows(database, "image.viewed")) == 2
    other = client.get(f"/api/studies/{study}/images/1.2.3/pixels", headers=headers)
    assert other.status_code == 404
