"""Fault-injection scenarios against the real service: listener and worker as `triage serve` starts
them, Orthanc as the PACS. After each, the five invariants (testkit/invariants.py) are checked from
the database, the storage and Orthanc's copy; ``make acceptance`` prints one row per scenario.
Faults come from the real world (a process SIGKILLed, the PACS stopped, images arriving late) or
from explicit, documented settings (fault_hold_after_claim_seconds), never from patched internals."""

from __future__ import annotations

import contextlib
import functools
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml
from pydicom.uid import RLELossless
from sqlalchemy import select

from testkit import phantoms
from testkit.peers import triage_env, wait_until
from tests.acceptance.conftest import SYNTAXES, Site
from tests.test_cli import triage
from triage.records.tables import StudyState

pytestmark = [pytest.mark.integration, pytest.mark.acceptance]

OUTAGE_SECONDS = 120.0  # the broker down two minutes while ingest goes on


def trauma(count: int, images: int = 2, first_seed: int = 0) -> list:
    """``count`` phantom trauma studies in mixed transfer syntaxes (one syntax per study)."""
    datasets = []
    for n in range(count):
        study = phantoms.trauma_study(n % 3 == 0, seed=first_seed + n, size=256, images=images)
        syntax = SYNTAXES[n % len(SYNTAXES)]
        for ds in study:
            if syntax == RLELossless:
                ds.compress(RLELossless, generate_instance_uid=False)
            else:
                ds.file_meta.TransferSyntaxUID = syntax
        datasets += study
    return datasets


@pytest.mark.short
def test_ingest_over_four_associations_in_mixed_syntaxes(site: Site, verdict) -> None:
    ingest(site, verdict, studies=8)


def test_ingest_of_200_studies_over_four_associations(site: Site, verdict) -> None:
    ingest(site, verdict, studies=200)


def ingest(site: Site, verdict, studies: int) -> None:
    sent = trauma(studies)
    started = time.monotonic()
    assert site.send(sent, associations=4) == len(sent)
    received = time.monotonic() - started
    wait_until(site.settled, timeout=60 + 3 * studies, interval=0.5)
    reported = sum(v.state == StudyState.REPORTED for v in site.versions())
    verdict(
        site, f"{len(sent)} instances received in {received:.0f} s, {studies} studies, {reported} REPORTED"
    )


def test_duplicates_and_a_conflicting_duplicate(site: Site, verdict) -> None:
    """The same study sent twice is stored once; an instance re-sent with other pixels under the same
    SOP Instance UID is kept in quarantine and its study goes conservative."""
    import numpy as np

    plain = phantoms.trauma_study(False, seed=81, size=256, images=2)
    assert site.send(plain) == 2 and site.send(plain) == 2
    conflicted = phantoms.trauma_study(False, seed=82, size=256, images=2)
    assert site.send(conflicted) == 2
    other = conflicted[1].copy()
    pixels = other.pixel_array.copy()
    pixels[:16, :16] = pixels.max()
    other.PixelData = np.ascontiguousarray(pixels).tobytes()
    assert site.send([other]) == 1, "kept in quarantine, so acknowledged"
    site.acknowledged.discard(str(other.SOPInstanceUID))  # the stored copy is the first one
    wait_until(lambda: len({v.study_id for v in site.versions()}) == 2 and site.settled(), timeout=240)
    by_study = {v.study_id: v for v in site.versions()}
    states = sorted(str(v.state) for v in by_study.values())
    assert any("conflict" in v.reason for v in site.versions()), site.versions()
    verdict(site, f"the duplicate stored once; the conflicting one quarantined, its study {states}")


def test_a_screen_with_two_views_then_the_rest_late(site: Site, verdict) -> None:
    views = phantoms.screen(None, seed=91, size=256)
    assert site.send(views[:2]) == 2
    wait_until(lambda: site.versions() and site.settled(), timeout=120, interval=0.5)
    [first] = site.versions()
    assert first.state == StudyState.NOT_ANALYSED and "incomplete screen" in first.reason
    assert site.send(views[2:]) == 2
    wait_until(lambda: len(site.versions()) == 2 and site.settled(), timeout=240, interval=0.5)
    latest = site.versions()[-1]
    verdict(site, f"version 1 NOT ANALYSED (incomplete), version 2 with four views {latest.state}")


def test_the_pacs_down_while_results_wait(site: Site, verdict) -> None:
    site.pacs.stop()
    sent = trauma(3, first_seed=10)
    assert site.send(sent) == len(sent)
    wait_until(lambda: all(v.state == StudyState.ANALYSED or v.state == StudyState.NOT_ANALYSED
                           for v in site.versions()) and len(site.versions()) == 3, timeout=180)  # fmt: skip
    time.sleep(5)  # a few failed tries against the stopped PACS
    back = time.monotonic()
    site.pacs.start()
    wait_until(site.settled, timeout=300, interval=0.5)
    verdict(site, f"all delivered {time.monotonic() - back:.0f} s after the PACS came back")


@pytest.mark.short
def test_a_late_image_after_reported_is_withdrawn_and_rejected_at_the_pacs(site: Site, verdict) -> None:
    first = phantoms.trauma_study(False, seed=21, size=256, images=2)
    assert site.send(first) == 2
    wait_until(lambda: [v.state for v in site.versions()] == [StudyState.REPORTED], timeout=180, interval=0.5)
    late = phantoms.trauma_study(False, seed=22, size=256, images=1)[0]
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "PatientBirthDate", "AccessionNumber"):
        setattr(late, keyword, getattr(first[0], keyword))
    assert site.send([late]) == 1
    wait_until(lambda: len(site.versions()) == 2 and site.settled() and site.notes_at_the_pacs(), timeout=240)
    states = [v.state for v in site.versions()]
    assert states[0] == StudyState.NOT_ANALYSED
    notes = site.notes_at_the_pacs()
    verdict(site, f"version 1 withdrawn, {len(notes)} rejection note(s) at the PACS, version 2 {states[1]}")


@pytest.mark.env(
    TRIAGE_RETAIN_ORIGINALS_DAYS="0.00002",  # under two seconds
    TRIAGE_RECONCILE_INTERVAL_SECONDS="1",
)
def test_a_retraction_after_retention_removed_the_originals(site: Site, verdict) -> None:
    sent = phantoms.trauma_study(False, seed=31, size=256, images=2)
    assert site.send(sent) == 2
    wait_until(lambda: [v.state for v in site.versions()] == [StudyState.REPORTED], timeout=180, interval=0.5)
    wait_until(lambda: not any(site.settings.storage_dir.rglob("*.dcm")), timeout=60, interval=0.5)
    env = triage_env(site.settings, **site.env)
    retracted = triage(
        "results", "retract", str(sent[0].StudyInstanceUID), "--reason", "model recalled", env=env
    )
    assert retracted.returncode == 0, retracted.stderr
    # The version is final at once; its withdrawal (superseding SR, rejection note) is a task after it.
    wait_until(lambda: site.settled() and site.notes_at_the_pacs(), timeout=180, interval=0.5)
    verdict(site, "originals removed, verdict retracted, superseded and rejected at the PACS")


@pytest.mark.env(TRIAGE_FAULT_HOLD_AFTER_CLAIM_SECONDS="60", TRIAGE_ANALYSIS_LEASE_SECONDS="5")
def test_a_worker_sigkilled_mid_analysis(site: Site, verdict) -> None:
    sent = phantoms.trauma_study(True, seed=41, size=256, images=1)
    assert site.send(sent) == 1
    wait_until(
        lambda: [v.state for v in site.versions()] == [StudyState.ANALYSING], timeout=120, interval=0.2
    )
    site.kill(site.worker)
    site.worker = site.start("worker", TRIAGE_FAULT_HOLD_AFTER_CLAIM_SECONDS="0")
    wait_until(site.settled, timeout=240, interval=0.5)
    verdict(site, f"lease ran out, analysed again: {site.versions()[0].state}")


def test_the_listener_sigkilled_mid_burst_and_the_sender_retries(site: Site, verdict) -> None:
    sent = trauma(10, first_seed=50)
    sender = threading.Thread(target=site.send, args=(sent,))
    sender.start()
    wait_until(lambda: len(site.acknowledged) >= 4, timeout=120, interval=0.05)
    site.kill(site.listener)
    sender.join(120)
    before = len(site.acknowledged)
    site.listener = site.start("listener")
    wait_until(site._answers, timeout=60, interval=0.2)
    assert site.send(sent) == len(sent), "the sender retries everything; what was stored is kept once"
    wait_until(site.settled, timeout=300, interval=0.5)
    verdict(site, f"{before} of {len(sent)} acknowledged before the kill; all {len(sent)} after the retry")


def test_the_gate_takes_the_conservative_path_visibly(site: Site, verdict) -> None:
    """A child's radiograph, a lossy mammogram, a tomosynthesis-only screen, a screen with a spot
    compression view and a study of two patients: each NOT ANALYSED, with why, its report at the PACS."""
    from pydicom import Dataset
    from pydicom.sequence import Sequence

    child = phantoms.trauma_study(False, seed=61, size=256, images=1)
    child[0].PatientBirthDate, child[0].PatientAge = "20200101", "006Y"
    lossy = phantoms.screen(None, seed=62, size=256)
    lossy[1].LossyImageCompression = "01"
    tomosynthesis = phantoms.screen(None, seed=63, size=256)
    for ds in tomosynthesis:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.13.1.3"
    spot = phantoms.screen(None, seed=64, size=256)
    modifier = Dataset()
    modifier.CodeValue, modifier.CodingSchemeDesignator, modifier.CodeMeaning = (
        "399055006",
        "SCT",
        "Spot Compression",
    )
    extra = phantoms.screen(None, seed=65, size=256)[0]
    extra.StudyInstanceUID = spot[0].StudyInstanceUID
    for keyword in ("PatientID", "PatientName", "PatientBirthDate", "AccessionNumber"):
        setattr(extra, keyword, getattr(spot[0], keyword))
    extra.ViewCodeSequence[0].ViewModifierCodeSequence = Sequence([modifier])
    mixed = phantoms.trauma_study(False, seed=66, size=256, images=2)
    mixed[1].PatientID = "SOMEONE-ELSE"
    sent = [*child, *lossy, *tomosynthesis, *spot, extra, *mixed]
    assert site.send(sent) == len(sent)
    # The spot view may come after the four plain views completed the screen: it opens version 2,
    # and version 1's verdict is withdrawn. Five studies, however many versions.
    wait_until(lambda: len({v.study_id for v in site.versions()}) == 5 and site.settled(), timeout=240)
    assert all(v.state == StudyState.NOT_ANALYSED for v in site.versions()), site.versions()
    said = " | ".join(v.reason for v in site.versions())
    expected = {"child": "age", "lossy": "lossily compressed", "tomosynthesis": "Tomosynthesis",
                "spot view": "diagnostic view (spot compression)", "two patients": "patient"}  # fmt: skip
    missing = [case for case, words in expected.items() if words not in said]
    assert not missing, f"no reason given for {missing}: {said}"
    verdict(site, f"5 of 5 NOT ANALYSED, each saying why ({', '.join(expected)})")


def test_the_broker_down_while_ingest_goes_on(tmp_path, make_settings, verdict) -> None:
    """A private Redis stopped for ``OUTAGE_SECONDS`` while studies keep arriving: every one is
    stored and acknowledged, waits in the outbox, and is analysed and reported once it is back."""
    import subprocess

    from testkit.peers import free_port

    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    redis = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    found = None
    try:
        time.sleep(0.5)
        found = Site(tmp_path, make_settings, {"TRIAGE_BROKER_URL": f"redis://127.0.0.1:{port}/0"})
        redis.terminate()
        redis.wait(30)
        down = time.monotonic()
        sent = trauma(4, first_seed=70)
        assert found.send(sent) == len(sent), "ingest does not wait for the broker"
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down)))
        redis = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        back = time.monotonic()
        wait_until(lambda: len(found.versions()) == 4 and found.settled(), timeout=300, interval=0.5)
        verdict(
            found, f"broker down {OUTAGE_SECONDS:g} s; all 4 reported {time.monotonic() - back:.0f} s after"
        )
    finally:
        if found is not None:
            found.close()
        redis.terminate()
        redis.wait(30)


# DCMTK's storescp accepting only the summary image and rejection notes, never an SR class.
NO_SR = r"""[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LocalEndianExplicit
TransferSyntax2 = LittleEndianImplicit
[[PresentationContexts]]
[NoSR]
PresentationContext1 = SecondaryCaptureImageStorage\Uncompressed
PresentationContext2 = KeyObjectSelectionDocumentStorage\Uncompressed
PresentationContext3 = VerificationSOPClass\Uncompressed
[[Profiles]]
[Default]
PresentationContexts = NoSR
"""


@pytest.mark.env(TRIAGE_DELIVERY_MAX_ATTEMPTS="3")
@pytest.mark.storescp("--abort-after")
def test_a_pacs_that_drops_every_association_mid_batch(site: Site, verdict) -> None:
    sent = phantoms.trauma_study(False, seed=101, size=256, images=1)
    assert site.send(sent) == 1
    wait_until(site.settled, timeout=240, interval=0.5)
    [version] = site.versions()
    assert version.state == StudyState.NOT_ANALYSED and "could not be delivered" in version.reason
    verdict(site, "3 tries, each association dropped: FAILED visibly, the study NOT ANALYSED")


@pytest.mark.storescp("--sleep-after", "3")
def test_a_slow_pacs(site: Site, verdict) -> None:
    sent = phantoms.trauma_study(False, seed=102, size=256, images=1)
    started = time.monotonic()
    assert site.send(sent) == 1
    wait_until(site.settled, timeout=240, interval=0.5)
    [version] = site.versions()
    assert version.state == StudyState.REPORTED
    verdict(site, f"3 s after each store: REPORTED {time.monotonic() - started:.0f} s after sending")


def test_a_pacs_that_takes_the_summary_image_and_refuses_every_sr_class(
    tmp_path, make_settings, verdict
) -> None:
    """The summary image (its banner names the verdict) is at the PACS; the SR never gets there: the
    study goes NOT ANALYSED and the summary image is rejected there by a note."""
    profile = tmp_path / "no-sr.cfg"
    profile.write_text(NO_SR)
    found = Site(tmp_path / "site", make_settings, storescp=("-xf", str(profile), "Default"))
    try:
        sent = phantoms.trauma_study(False, seed=103, size=256, images=1)
        assert found.send(sent) == 1
        wait_until(lambda: found.settled() and found.received_by_storescp("KO"), timeout=240, interval=0.5)
        [version] = found.versions()
        assert version.state == StudyState.NOT_ANALYSED and "refused for good" in version.reason
        assert found.received_by_storescp("SC") and not found.received_by_storescp("SR")
        verdict(found, "SR refused for good: NOT ANALYSED; the summary image rejected at the PACS")
    finally:
        found.close()


@pytest.mark.parametrize("step", ["received", "synced", "stored", "committed"])
def test_the_listener_killed_at_each_durability_step(tmp_path, make_settings, verdict, step) -> None:
    """The listener dies (SIGKILL, from the fault setting) at one step of storing an instance, before
    it answers: the sender has no 0x0000 and sends again to the restarted listener. What the dead one
    left (a partial reception, a durable file without a row, a row without an answer) is settled:
    stored once, or moved to quarantine as an orphan, never lost and never twice."""
    found = Site(tmp_path, make_settings, {
        "TRIAGE_FAULT_KILL_LISTENER_AT": step, "TRIAGE_LEFTOVER_GRACE_SECONDS": "1",
        "TRIAGE_RECONCILE_INTERVAL_SECONDS": "1",
    })  # fmt: skip
    try:
        sent = phantoms.trauma_study(False, seed=111, size=256, images=1)
        assert found.send(sent) == 0, "no answer came: the listener died first"
        found.listener.wait(30)
        found.listener = found.start("listener", TRIAGE_FAULT_KILL_LISTENER_AT="")
        wait_until(found._answers, timeout=60, interval=0.2)
        assert found.send(sent) == 1
        wait_until(found.settled, timeout=240, interval=0.5)
        time.sleep(3)  # a reconciling pass after the grace: leftovers of the dead listener settled
        incoming = [
            p for p in found.settings.incoming_dir.rglob("*") if p.is_file() and p.name != ".receiving"
        ]
        assert incoming == [], incoming
        verdict(found, f"killed after '{step}': re-sent, stored once, {found.versions()[0].state}")
    finally:
        found.close()


@pytest.mark.storescp("-v")
def test_a_pacs_answering_out_of_resources_until_it_recovers(site: Site, verdict) -> None:
    """storescp whose storage folder is gone answers every C-STORE 0xA700 (Out of Resources): the
    results wait and are tried again, the study is not REPORTED meanwhile; once the PACS has its
    storage back they are delivered."""
    site.received.rmdir()
    sent = phantoms.trauma_study(False, seed=121, size=256, images=1)
    assert site.send(sent) == 1
    wait_until(lambda: "0xA700" in site.last_errors() and site.tries() >= 2, timeout=180, interval=0.5)
    assert [v.state for v in site.versions()] == [StudyState.ANALYSED], "not REPORTED while refused"
    tries = site.tries()
    site.received.mkdir()
    wait_until(site.settled, timeout=240, interval=0.5)
    [version] = site.versions()
    assert version.state == StudyState.REPORTED and site.received_by_storescp("SR")
    verdict(site, f"{tries} tries answered 0xA700; REPORTED once the PACS had its storage back")


def test_a_paused_worker_past_the_result_deadline(tmp_path, make_settings, routing_file, verdict) -> None:
    """The worker is paused (SIGSTOP) mid-analysis past the study's result deadline: the study goes
    NOT ANALYSED with that reason; resumed, the worker's late result changes nothing."""
    config = yaml.safe_load(routing_file.read_text())
    config["pipelines"]["fracture"]["result_deadline_seconds"] = 25
    short = tmp_path / "routing-short.yaml"
    short.write_text(yaml.safe_dump(config))
    found = Site(tmp_path / "site", make_settings, {
        "TRIAGE_ROUTING_FILE": str(short), "TRIAGE_FAULT_HOLD_AFTER_CLAIM_SECONDS": "5",
    })  # fmt: skip
    try:
        sent = phantoms.trauma_study(True, seed=131, size=256, images=1)
        assert found.send(sent) == 1
        wait_until(lambda: [v.state for v in found.versions()] == [StudyState.ANALYSING], timeout=120)
        found.signal(found.worker, signal.SIGSTOP)
        wait_until(lambda: found.versions()[0].state == StudyState.NOT_ANALYSED, timeout=120, interval=0.5)
        found.signal(found.worker, signal.SIGCONT)
        time.sleep(10)  # the resumed worker finishes its analysis and tries to record it
        wait_until(found.settled, timeout=120, interval=0.5)
        [version] = found.versions()
        assert version.state == StudyState.NOT_ANALYSED and "deadline" in version.reason, version
        verdict(found, f"paused past the deadline: NOT ANALYSED ({version.reason}); the late result ignored")
    finally:
        found.close()


def test_a_redelivered_analysis_task_changes_nothing(site: Site, verdict) -> None:
    """The broker delivers a study's analysis task again after it was done (a lost acknowledgement):
    the worker finds the version no longer queued; one result, one SR."""
    from triage.messages import ANALYSE_STUDY
    from triage.records.outbox import QUEUE, make_celery, task_id
    from triage.records.tables import OutboxMessage

    sent = phantoms.trauma_study(False, seed=141, size=256, images=1)
    assert site.send(sent) == 1
    wait_until(lambda: [v.state for v in site.versions()] == [StudyState.REPORTED], timeout=180, interval=0.5)
    with site.database.reading() as session:
        message = session.scalars(select(OutboxMessage).where(OutboxMessage.task_name == ANALYSE_STUDY)).one()
        message_id, payload = message.id, dict(message.payload)
    app = make_celery(site.settings)
    for _ in range(2):
        app.send_task(ANALYSE_STUDY, kwargs={"payload": payload}, task_id=task_id(message_id), queue=QUEUE)
    wait_until(lambda: site.log_says("worker", "is not queued (any more)") >= 2, timeout=120, interval=0.5)
    assert [v.state for v in site.versions()] == [StudyState.REPORTED]
    verdict(site, "the task delivered twice more: not queued any more, one result, one SR")


def test_a_model_whose_output_is_nan(tmp_path, make_settings, verdict) -> None:
    """Weights damaged to give NaN (a valid card and hash, so the model loads): every study goes
    NOT ANALYSED with "invalid model output", reported to the PACS as such."""
    import torch

    from inference.model import load_model
    from training.export import write_model
    from triage.cards import read_card

    models = tmp_path / "models"
    bundled = Path(__file__).parents[2] / "models"
    shutil.copytree(bundled / "breast", models / "breast")
    loaded = load_model(bundled / "fracture", torch.device("cpu"))
    with torch.no_grad():
        for parameter in loaded.network.parameters():
            parameter.fill_(float("nan"))
    card = read_card(bundled / "fracture").model_dump(exclude={"weights_file", "weights_sha256"})
    write_model(models / "fracture", loaded.network, **{**card, "version": "2.0.0+nan-test"})
    found = Site(tmp_path / "site", make_settings, {"TRIAGE_MODELS_DIR": str(models)})
    try:
        sent = trauma(3, first_seed=150)
        assert found.send(sent) == len(sent)
        wait_until(lambda: len(found.versions()) == 3 and found.settled(), timeout=240, interval=0.5)
        reasons = {v.reason for v in found.versions()}
        assert all(v.state == StudyState.NOT_ANALYSED for v in found.versions()), found.versions()
        assert all("invalid model output" in r for r in reasons), reasons
        verdict(found, "NaN from the network: 3 of 3 NOT ANALYSED (invalid model output), reported")
    finally:
        found.close()


@pytest.mark.storescp("--sleep-after", "4")
def test_a_retraction_racing_the_delivery(site: Site, verdict) -> None:
    """An admin retracts the verdict while its objects are on the way to a slow PACS: whatever the
    PACS acknowledged, before or after the retraction, is rejected there by a note."""
    sent = phantoms.trauma_study(False, seed=161, size=256, images=1)
    assert site.send(sent) == 1
    wait_until(lambda: site.received_by_storescp("SC"), timeout=180, interval=0.1)  # the first is in
    env = triage_env(site.settings, **site.env)
    retracted = triage("results", "retract", str(sent[0].StudyInstanceUID), "--reason", "wrong side", env=env)
    assert retracted.returncode == 0, retracted.stderr
    wait_until(lambda: site.settled() and site.received_by_storescp("KO"), timeout=240, interval=0.5)
    [version] = site.versions()
    assert version.state == StudyState.NOT_ANALYSED
    held = len(site.received_by_storescp("SC")) + len(site.received_by_storescp("SR"))
    verdict(site, f"retracted mid-delivery: {held} object(s) at the PACS, each rejected by a note")


def test_the_database_locked_during_a_burst(site: Site, verdict) -> None:
    """Another process holds SQLite's write lock for 40 s (past the 30 s busy timeout) while studies
    arrive: nothing is answered 0x0000 without its row; the sender retries; all are stored once."""
    import sqlite3

    sent = trauma(6, first_seed=170)
    database_path = str(site.settings.resolved_database_url).removeprefix("sqlite:///")
    lock = sqlite3.connect(database_path, timeout=60, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    sender = threading.Thread(target=site.send, args=(sent,))
    sender.start()
    time.sleep(40)
    lock.execute("COMMIT")
    lock.close()
    sender.join(120)
    during = len(site.acknowledged)
    wait_until(site._answers, timeout=60, interval=0.2)
    assert site.send(sent) == len(sent), "the sender retries what was not acknowledged"
    wait_until(lambda: len(site.versions()) == 6 and site.settled(), timeout=300, interval=0.5)
    verdict(site, f"locked 40 s: {during} of {len(sent)} acknowledged meanwhile; all stored after the retry")


def _reported(site: Site, count: int) -> bool:
    versions = site.versions()
    return len(versions) == count and all(v.state == StudyState.REPORTED for v in versions)


@pytest.mark.parametrize("how", ["killed", "cut off without a FIN"])
def test_the_leader_killed_or_cut_off(tmp_path, make_settings, private_postgres, verdict, how) -> None:
    """Two listeners over one PostgreSQL database; the leader is SIGKILLed, or its network to the
    database goes silent (no FIN, no RST). The other takes the lead when the lease lapses (30 s by
    the database's clock), and a study it receives completes and reaches the PACS."""
    from testkit.peers import free_port, stop
    from testkit.proxy import CuttableProxy

    proxy = CuttableProxy(5432)
    found = Site(tmp_path, make_settings, database_url=private_postgres)
    standby = None
    try:
        stop(found.listener)  # the leader again, its database link through the proxy
        via_proxy = private_postgres.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        found.listener = found.start("listener", TRIAGE_DATABASE_URL=via_proxy)
        wait_until(found._answers, timeout=60, interval=0.2)
        standby_port = free_port()
        standby = found.start("listener", TRIAGE_DICOM_PORT=str(standby_port))
        wait_until(lambda: found._answers(standby_port), timeout=60, interval=0.2)
        assert found.send(phantoms.trauma_study(False, seed=181, size=256, images=1)) == 1
        wait_until(lambda: _reported(found, 1), timeout=180, interval=0.5)
        if how == "killed":
            found.kill(found.listener)
        else:
            proxy.cut()
        fault = time.monotonic()
        assert found.send(phantoms.trauma_study(True, seed=182, size=256, images=1), port=standby_port) == 1
        wait_until(lambda: _reported(found, 2), timeout=240, interval=0.5)
        took = time.monotonic() - fault
        verdict(found, f"leader {how}: the standby led and reported a new study {took:.0f} s later")
    finally:
        if found.listener.poll() is None:
            found.kill(found.listener)  # cut off, it may hang on its silent link
        if standby is not None:
            stop(standby)
        found.close()
        proxy.close()


def test_the_database_down_during_a_burst(tmp_path, make_settings, private_postgres, verdict) -> None:
    """PostgreSQL goes away for 30 s (connections reset, new ones refused) while studies arrive: no
    instance is answered 0x0000 without its row; once it is back the sender's retry stores all."""
    from testkit.proxy import CuttableProxy

    proxy = CuttableProxy(5432)
    via_proxy = private_postgres.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    found = Site(tmp_path, make_settings, {"TRIAGE_DATABASE_URL": via_proxy}, database_url=private_postgres)
    try:
        sent = trauma(6, first_seed=190)
        proxy.down()
        down = time.monotonic()
        during = found.send(sent)
        time.sleep(max(0.0, 30 - (time.monotonic() - down)))
        proxy.up()
        wait_until(lambda: found.send(sent) == len(sent), timeout=180, interval=5)
        wait_until(lambda: len(found.versions()) == 6 and found.settled(), timeout=300, interval=0.5)
        verdict(found, f"down 30 s: {during} of {len(sent)} acknowledged meanwhile; all stored after it")
    finally:
        found.close()
        proxy.close()


def test_the_disk_full_during_a_burst(tmp_path, make_settings, verdict) -> None:
    """triage's home (storage, database, results) on a 40 MiB tmpfs, a 48 MiB burst with an 8 MiB
    free-space watermark: what cannot be kept is refused (0xA700 or the association turned away),
    nothing acknowledged is lost; with space back, the sender's retry is taken and all settle."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.fail("this scenario mounts a tmpfs and needs root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(disk)], check=True)
    found = None
    try:

        def on_the_small_disk(**values):
            return make_settings(home=disk / "home", **values)

        found = Site(tmp_path / "site", on_the_small_disk, {"TRIAGE_STORAGE_MIN_FREE_BYTES": str(8 << 20)})
        sent = []
        for n in range(12):
            sent += phantoms.trauma_study(n % 2 == 0, seed=200 + n, size=1024, images=2)
        during = found.send(sent)
        assert 0 < during < len(sent), f"{during} of {len(sent)}: the disk was to fill mid-burst"
        subprocess.run(["mount", "-o", "remount,size=512m", "tmpfs", str(disk)], check=True)
        wait_until(lambda: found.send(sent) == len(sent), timeout=180, interval=5)
        wait_until(lambda: len({v.study_id for v in found.versions()}) == 12 and found.settled(), timeout=400)
        verdict(found, f"disk full: {during} of {len(sent)} acknowledged; all stored once space came back")
    finally:
        if found is not None:
            found.close()
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_one_gigabyte_instance(site: Site, verdict) -> None:
    """A 1 GiB radiograph beside an ordinary one in a trauma study: streamed to disk and stored with
    its hash (the listener's memory does not grow with it), then NOT ANALYSED, since no image that
    large is decoded, with the reason; the ordinary image is kept beside it."""
    from pydicom.uid import generate_uid

    ordinary = phantoms.trauma_study(False, seed=221, size=256, images=1)[0]
    huge = ordinary.copy()
    huge.SOPInstanceUID = huge.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    huge.InstanceNumber = 2
    huge.Rows = huge.Columns = 23170  # 23170 x 23170 x 2 bytes: 1.0 GiB of pixel data
    huge.PixelData = bytes(23170 * 23170 * 2)
    started = time.monotonic()
    assert site.send([ordinary, huge]) == 2
    received = time.monotonic() - started
    peak = _peak_resident_mib(site.listener.pid)
    wait_until(site.settled, timeout=300, interval=0.5)
    [version] = site.versions()
    assert version.state == StudyState.NOT_ANALYSED and "more than the 64 MiB" in version.reason, version
    verdict(
        site,
        f"1 GiB received in {received:.0f} s, listener peak RSS {peak} MiB; NOT ANALYSED ({version.reason})",
    )


def _peak_resident_mib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) >> 10


def test_rabbitmq_down_while_ingest_goes_on(tmp_path, make_settings, verdict) -> None:
    """RabbitMQ (a virtual host of its own, reached through a proxy on an ephemeral port) goes away
    for ``OUTAGE_SECONDS``: connections reset, new ones refused. Studies keep arriving and are
    stored and acknowledged; they wait in the outbox and are analysed and reported once it is back."""
    import subprocess

    from testkit.proxy import CuttableProxy

    vhost = f"triage-acceptance-{time.monotonic_ns()}"
    for command in (["add_vhost", vhost], ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]):
        subprocess.run(["rabbitmqctl", *command], check=True, capture_output=True, timeout=60)
    proxy = CuttableProxy(5672)
    found = None
    try:
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost}"
        found = Site(tmp_path, make_settings, {"TRIAGE_BROKER_URL": url})
        assert found.send(phantoms.trauma_study(False, seed=231, size=256, images=1)) == 1
        wait_until(lambda: _reported(found, 1), timeout=180, interval=0.5)
        proxy.down()
        down = time.monotonic()
        sent = trauma(4, first_seed=232)
        assert found.send(sent) == len(sent), "ingest does not wait for the broker"
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down)))
        proxy.up()
        back = time.monotonic()
        wait_until(lambda: len(found.versions()) == 5 and found.settled(), timeout=300, interval=0.5)
        verdict(
            found, f"RabbitMQ down {OUTAGE_SECONDS:g} s; all 4 reported {time.monotonic() - back:.0f} s after"
        )
    finally:
        if found is not None:
            found.close()
        proxy.close()
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], check=False, capture_output=True, timeout=60)


@pytest.mark.env(TRIAGE_MODEL_CHECK_SECONDS="2")
def test_a_promotion_while_studies_flow(site: Site, verdict) -> None:
    """A site's model version is promoted in the MLflow registry while trauma studies keep arriving:
    every result names the model that made it, the worker changes model between studies (never in
    one), and within seconds every new result is the promoted model's."""
    from inference import registry
    from training.tracking import log_run
    from triage.cards import read_card
    from triage.pipelines import Pipeline
    from triage.records.tables import Result

    bundled = Path(__file__).parents[2] / "models" / "fracture"
    folder = site.folder / "site-model"
    shutil.copytree(bundled, folder)
    card = read_card(folder).model_copy(update={"version": "2.0.0+site"})
    card.write(folder)
    run_id = log_run(site.settings, Pipeline.FRACTURE, "site copy", {"kind": "test"}, {}, model_folder=folder)
    number = registry.register(site.settings, folder, run_id)
    stop, sent = threading.Event(), []

    def stream() -> None:  # a study a second until the promoted model has made a few results
        while not stop.is_set() and len(sent) < 200:
            sent.append(site.send(trauma(1, first_seed=240 + len(sent))))
            time.sleep(1)

    def made_by(version: str) -> int:
        with site.database.reading() as session:
            return len(list(session.scalars(select(Result.id).where(Result.model_version == version))))

    sender = threading.Thread(target=stream)
    sender.start()
    wait_until(lambda: made_by("2.0.0") >= 5, timeout=180, interval=0.5)
    at = site.database.now()
    promoted = triage("models", "promote", "fracture", number, env=triage_env(site.settings, **site.env))
    assert promoted.returncode == 0, promoted.stderr
    wait_until(lambda: made_by("2.0.0+site") >= 5, timeout=240, interval=0.5)
    stop.set()
    sender.join(60)
    wait_until(lambda: len(site.versions()) == len(sent) and site.settled(), timeout=300, interval=0.5)
    with site.database.reading() as session:
        made = list(session.execute(select(Result.created_at, Result.model_version).order_by(Result.id)))
    versions = [v for _, v in made]
    assert set(versions) <= {"2.0.0", "2.0.0+site"} and all(versions), versions
    switched = versions.index("2.0.0+site")
    assert versions[switched:] == ["2.0.0+site"] * (len(versions) - switched), "never back to the old one"
    lag = (made[switched].created_at - at).total_seconds()
    verdict(
        site,
        f"{switched} results by 2.0.0, {len(versions) - switched} by 2.0.0+site; "
        f"switched {lag:.0f} s after `triage models promote` started",
    )


def _settled_with(site: Site, count: int) -> bool:
    return len(site.versions()) == count and site.settled()


RECALIBRATED_SECONDS = 65  # every process reads the database server's clock again each minute


@pytest.mark.timeout(900)
def test_the_database_clock_stepped_forward_and_back(
    tmp_path, make_settings, movable_clock_postgres, verdict
):
    """The database server's clock (the one every deadline, lease and quiet period is measured in)
    steps two hours forward, then four back, with a study arriving at each step. A study caught by
    a step may go NOT ANALYSED (its deadline seems passed) but is never cleared on a stale result;
    once every process has read the clock again, new studies are analysed and reported as usual."""
    url, clock = movable_clock_postgres
    found = Site(tmp_path, make_settings, database_url=url)
    try:
        seen = []
        for n, step in enumerate(("+0", "+2h", "-2h")):
            clock.write_text(f"{step}\n")
            caught = trauma(1, first_seed=250 + 2 * n)
            assert found.send(caught) == len(caught)
            time.sleep(RECALIBRATED_SECONDS if step != "+0" else 0)
            after = trauma(1, first_seed=251 + 2 * n)
            assert found.send(after) == len(after)
            wait_until(functools.partial(_settled_with, found, 2 * (n + 1)), timeout=240, interval=0.5)
            caught_state, after_state = (v.state for v in found.versions()[-2:])
            assert after_state == StudyState.REPORTED, found.versions()
            seen.append(f"{step}: caught {caught_state}, after {after_state}")
        verdict(found, "; ".join(seen))
    finally:
        found.close()


def test_aborted_transfers_leave_nothing_behind(site: Site, verdict) -> None:
    """Three senders abort (A-ABORT) in the middle of a 200 MiB C-STORE: nothing is acknowledged or
    kept, the partial files are gone at once (not when the listener stops), and the study sent
    again afterwards is stored once."""
    from pydicom.uid import generate_uid
    from pynetdicom import AE

    ordinary = phantoms.trauma_study(False, seed=261, size=256, images=1)[0]
    large = ordinary.copy()
    large.SOPInstanceUID = large.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    large.Rows = large.Columns = 10240  # 200 MiB of pixel data
    large.PixelData = bytes(10240 * 10240 * 2)
    incoming = site.settings.incoming_dir
    for _ in range(3):
        ae = AE(ae_title="STORESCU")
        ae.add_requested_context(large.SOPClassUID, large.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", site.settings.dicom_port, ae_title="TRIAGE")
        assert assoc.is_established
        sending = threading.Thread(target=lambda a=assoc: _quietly(a.send_c_store, large))
        sending.start()
        wait_until(lambda: _partial_bytes(incoming) > 20 << 20, timeout=60, interval=0.05)
        assoc.abort()
        sending.join(60)
    wait_until(lambda: _partial_bytes(incoming) == 0, timeout=30, interval=0.2)
    assert site.send([large, ordinary]) == 2, "sent again whole, both are taken"
    wait_until(site.settled, timeout=240, interval=0.5)
    verdict(site, "3 transfers aborted at 20+ MiB of 200 MiB: nothing kept; the study sent again stored once")


def _quietly(send, dataset) -> None:
    with contextlib.suppress(RuntimeError, OSError, ValueError):  # the association was aborted under it
        send(dataset)


def _partial_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name != ".receiving")
