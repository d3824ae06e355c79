"""Patient data stays in: a study carrying canary patient data, with malformed
dates that make pydicom's validators talk, goes through the running service (listener, worker and
API, results built for a PACS), is viewed and read on the API, and is exported as labels; no canary
value may then be found in any log, in the broker's messages, or in the export."""

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import select

from testkit import phantoms, synthetic
from testkit.peers import REPO, free_port, start_triage, storescu, triage_env, wait_until
from triage.records.db import Database
from triage.records.tables import StudyState, StudyVersion

pytestmark = pytest.mark.integration

CANARIES = {
    "PatientName": "CANARYFAMILY" + "Q" * 60 + "^CANARYGIVEN",  # past PN's 64 characters a group
    "PatientID": "CANARYID7731",
    "OtherPatientIDs": "CANARYOTHER4417",
    "AccessionNumber": "CANARYACC99",
    "PatientBirthDate": "1980-01-01",  # not a DA (YYYYMMDD): pydicom's validator would print it
    "PatientAddress": "17 Canary Wharf Road",
    "StudyDescription": "XR WRIST CANARYDESC",
}
FOUND_AS = ["CANARYFAMILY", "CANARYGIVEN", "CANARYID7731", "CANARYOTHER4417", "CANARYACC99", "1980-01-01",
            "Canary Wharf", "CANARYDESC"]  # fmt: skip


PASSWORD = "canary test password 1"
JUDGED = (StudyState.ANALYSED, StudyState.NOT_ANALYSED, StudyState.IGNORED)


def canary_study(tmp_path: Path) -> list[Path]:
    datasets = phantoms.trauma_study(False, seed=11, images=2)
    for ds in datasets:
        for keyword, value in CANARIES.items():
            setattr(ds, keyword, value)
        ds.PatientAge = "045Y"  # an adult: the study is analysed, not stopped at the gate
    return synthetic.write(datasets, tmp_path / "canary")


def api(port: int, method: str, path: str, token: str | None = None, body: object = None) -> object:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {token}"} if token else {}),
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        data = response.read()
    return (
        json.loads(data) if response.headers.get("Content-Type", "").startswith("application/json") else data
    )


def everything_under(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.mark.filterwarnings("ignore:Invalid value for VR", "ignore:The value length")
def test_canary_patient_data_reaches_no_log_message_or_export(make_settings, tmp_path):
    settings = make_settings(
        dicom_port=free_port(),
        api_port=free_port(),
        pacs=f"PACS@127.0.0.1:{free_port()}",  # nobody there
    )
    log = tmp_path / "serve.log"
    serve = start_triage("serve", settings, log)
    env = triage_env(settings)
    try:
        paths = canary_study(tmp_path)
        wait_until(lambda: storescu(settings.dicom_port, *paths).returncode == 0, timeout=90, interval=1)
        database = Database(settings.resolved_database_url)

        def judged():
            with database.session() as session:
                return session.scalars(select(StudyVersion).where(StudyVersion.state.in_(JUDGED))).first()

        version = wait_until(judged, timeout=180)
        assert version.state == StudyState.ANALYSED, version.reason
        assert (settings.results_dir).is_dir() and any(settings.results_dir.rglob("*.dcm")), "SR built"

        port, study = settings.api_port, f"/api/studies/{version.study_id}"
        password = (settings.home / "initial-admin-password").read_text().strip()
        admin = api(port, "POST", "/api/session", body={"username": "admin", "password": password})["token"]
        added = subprocess.run(
            [sys.executable, "-m", "triage", "users", "add", "reader", "--role=radiologist",
             "--password-stdin"],
            input=f"{PASSWORD}\n", capture_output=True, text=True, env=env, cwd=REPO, check=False,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        reader = api(port, "POST", "/api/session", body={"username": "reader", "password": PASSWORD})["token"]
        detail = api(port, "GET", study, reader)
        assert "CANARYID7731" in json.dumps(detail), "the API shows the patient to a radiologist"
        api(port, "GET", "/api/worklist?queue=all&q=CANARYID7731", reader)
        for image in detail["instances"]:
            api(port, "GET", f"{study}/images/{image['sop_instance_uid']}", reader)
        api(port, "POST", f"{study}/feedback", reader, {"kind": "FRACTURE", "value": False})
        api(port, "GET", "/api/audit?patient_id=CANARYID7731", admin)
        export = subprocess.run(
            [sys.executable, "-m", "triage", "labels", "export", "--out", str(tmp_path / "export")],
            capture_output=True, text=True, env=env, cwd=REPO, check=False,
        )  # fmt: skip
        assert export.returncode == 0, export.stderr
    finally:
        serve.send_signal(signal.SIGINT)
        code = serve.wait(60)
    text = log.read_text()
    assert code == 0, text
    assert "DICOM listener" in text and "worker" in text and "Uvicorn" in text, "all three logged"
    haystacks = {
        log: text.encode(),
        **everything_under(settings.queue_dir),  # the embedded broker's messages
        **everything_under(tmp_path / "export"),
        Path("export stdout"): export.stdout.encode() + export.stderr.encode(),
    }
    assert len(haystacks) > 3
    leaks = [
        (str(path), canary)
        for path, data in haystacks.items()
        for canary in FOUND_AS
        if canary.encode() in data
    ]
    assert leaks == []
