"""The ``triage`` command as an operator runs it, in real processes."""

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import select

from testkit import phantoms, synthetic
from testkit.peers import REPO, free_port, start_triage, storescu, triage_env, wait_until
from triage.cards import read_card
from triage.records.db import Database
from triage.records.tables import Result, StudyState, StudyVersion


def triage(*args, env=None, timeout=60):
    env = {**(env or os.environ), "COLUMNS": "400"}  # keep typer's error box from wrapping messages
    return subprocess.run(
        [sys.executable, "-m", "triage", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )


def test_echo_and_send_against_the_listener(listener, tmp_path):
    peer = f"TRIAGE@127.0.0.1:{listener.port}"
    echoed = triage("echo", peer)
    assert echoed.returncode == 0 and "C-ECHO status 0x0000" in echoed.stdout
    paths = synthetic.write(synthetic.screen(), tmp_path / "screen")
    (tmp_path / "screen" / "notes.txt").write_text("not DICOM")
    sent = triage("send", str(tmp_path / "screen"), "--to", peer)
    assert "4 sent, 1 failed" in sent.stdout
    assert sent.returncode == 1
    assert sum(line.startswith("0x0000 sent") for line in sent.stdout.splitlines()) == len(paths)


def test_send_to_a_malformed_peer_is_a_usage_error(tmp_path):
    [path] = synthetic.write([synthetic.dx()], tmp_path)
    result = triage("send", str(path), "--to", "PACS-at-nowhere")
    assert result.returncode == 2
    assert "write it as AE@host:port" in result.stderr


@pytest.mark.integration
def test_unknown_calling_ae_cannot_echo(listener):
    result = triage("echo", f"TRIAGE@127.0.0.1:{listener.port}", "--calling-ae", "STRANGER")
    assert result.returncode == 1 and "no association" in result.stderr


def test_invalid_setting_is_named_at_start(settings):
    env = triage_env(settings, TRIAGE_AE_TITLE="MUCH_TOO_LONG_FOR_AN_AE")
    result = triage("listener", env=env)
    assert result.returncode == 2
    assert "ae_title" in result.stderr and "1 to 16 printable characters" in result.stderr


def test_listener_refuses_to_start_with_an_empty_allow_list(settings):
    result = triage("listener", env=triage_env(settings, TRIAGE_ALLOWED_CALLING_AES=""))
    assert result.returncode == 2
    assert (
        "TRIAGE_ALLOWED_CALLING_AES is empty" in result.stderr
        and "or to * to accept any caller" in result.stderr
    )


def test_yaml_file_is_read_and_environment_wins(settings, tmp_path):
    config = tmp_path / "service.yaml"
    config.write_text("ae_title: FROMFILE\ndicom_port: 1234\n")
    from triage.settings import load_settings

    loaded = load_settings(config, routing_file=settings.routing_file)
    assert loaded.ae_title == "FROMFILE" and loaded.dicom_port == 1234


@pytest.mark.integration
def test_serve_runs_everything_on_embedded_defaults_and_stops_on_ctrl_c(make_settings, tmp_path):
    settings = make_settings(dicom_port=free_port(), api_port=free_port())
    serve = start_triage("serve", settings, tmp_path / "serve.log")
    try:
        wait_until(
            lambda: triage("echo", f"TRIAGE@127.0.0.1:{settings.dicom_port}").returncode == 0,
            timeout=60,
        )
        screen = synthetic.write(phantoms.screen("L", seed=1), tmp_path / "screen")
        trauma = synthetic.write(phantoms.trauma_study(True, seed=2, images=3), tmp_path / "trauma")
        assert storescu(settings.dicom_port, *screen, *trauma).returncode == 0
        database = Database(settings.resolved_database_url)

        def results():
            with database.session() as session:
                rows = session.execute(
                    select(StudyVersion.state, Result.pipeline, Result.summary).join(Result)
                ).all()
            return (
                {pipeline: (state, summary) for state, pipeline, summary in rows} if len(rows) == 2 else None
            )

        done = wait_until(results, timeout=120)
        state, summary = done["breast"]
        assert state == StudyState.ANALYSED and summary.startswith("score ")
        assert summary.endswith("[model triage-breast-demo 1.0.0]")
        state, summary = done["fracture"]
        bundled = read_card(REPO / "models" / "fracture")
        assert state == StudyState.ANALYSED and summary.endswith(f"[model {bundled.name} {bundled.version}]")
        assert summary.split(" (")[0] in {"FRACTURE", "DOUBT", "NO FRACTURE"}
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.api_port}/readyz", timeout=5) as response:
            ready = json.load(response)
        assert ready == {
            "database": True,
            "queue": True,
            "pacs": "not configured",
            "studies_by_state": {"ANALYSED": 2},
            "storage": "ok",
            "degraded": [],
        }
        # First start on loopback: an admin account whose password only the file's owner can read.
        password = (settings.home / "initial-admin-password").read_text().strip()
        request = urllib.request.Request(
            f"http://127.0.0.1:{settings.api_port}/api/session",
            data=json.dumps({"username": "admin", "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["roles"] == ["admin"]
    finally:
        serve.send_signal(signal.SIGINT)
        code = serve.wait(60)
    log = (tmp_path / "serve.log").read_text()
    assert code == 0, log
    assert "DICOM listener stopped" in log
    assert "SYN0001" not in log and "Synthetic^Patient" not in log, "patient data must never be logged"


def _child(parent: int, command: str) -> int | None:
    """The pid of ``parent``'s child running ``triage COMMAND`` (None: none now)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    for pid in children:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if command.encode() in argv:
            return int(pid)
    return None


@pytest.mark.integration
def test_serve_restarts_a_child_that_dies_and_ingest_goes_on(make_settings, tmp_path):
    settings = make_settings(dicom_port=free_port(), api_port=free_port())
    serve = start_triage("serve", settings, tmp_path / "serve.log")
    ready = f"http://127.0.0.1:{settings.api_port}/healthz"

    def api_up():
        try:
            with urllib.request.urlopen(ready, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_until(
            lambda: triage("echo", f"TRIAGE@127.0.0.1:{settings.dicom_port}").returncode == 0, timeout=60
        )
        wait_until(api_up, timeout=60)
        api = _child(serve.pid, "api")
        assert api is not None
        os.kill(api, signal.SIGKILL)  # as the OOM killer would
        trauma = synthetic.write(phantoms.trauma_study(False, seed=4, images=1), tmp_path / "trauma")
        assert storescu(settings.dicom_port, *trauma).returncode == 0, "ingest does not wait for the API"
        wait_until(lambda: _child(serve.pid, "api") not in (None, api) and api_up(), timeout=60)
    finally:
        serve.send_signal(signal.SIGINT)
        code = serve.wait(60)
    log = (tmp_path / "serve.log").read_text()
    assert code == 0, log
    assert "the api stopped (exit -9), 1 time(s) in 10 min; starting it again in 1 s" in log


def test_results_retract_withdraws_the_verdict_that_acts(settings, database):
    from tests.worklist import seed
    from triage.records.tables import AuditEvent, Study

    ids = seed.worklist_of_every_kind(database, settings)
    with database.session() as session:
        uid = session.get(Study, ids["no_fracture"]).study_instance_uid
    env = triage_env(settings)
    assert triage("results", "retract", uid, "--reason", "", env=env).returncode == 2
    retracted = triage("results", "retract", uid, "--reason", "wrong patient on the request", env=env)
    assert retracted.returncode == 0, retracted.stderr
    assert "retracted version 1; the PACS gets a superseding SR and a rejection note" in retracted.stdout
    again = triage("results", "retract", uid, "--reason", "wrong patient on the request", env=env)
    assert again.returncode == 1 and "no AI verdict acts on this study" in again.stderr
    assert "no study 1.2.3" in triage("results", "retract", "1.2.3", "--reason", "why", env=env).stderr
    with database.session() as session:
        [version] = session.scalars(select(StudyVersion).where(StudyVersion.study_id == ids["no_fracture"]))
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "result.withdrawn"))
    assert version.state == StudyState.NOT_ANALYSED and "wrong patient on the request" in version.reason
    assert event.actor.startswith("cli:") and event.source == "cli" and event.study_id == ids["no_fracture"]


def test_outbound_lists_what_failed_and_resends_what_may_go_again(settings, database):
    from tests.worklist import seed
    from tests.worklist.test_api import failed_items

    ids = seed.worklist_of_every_kind(database, settings)
    kos, sr, message = failed_items(database, ids["fracture"])
    env = triage_env(settings)
    listed = triage("outbound", "list", "--state", "FAILED", env=env)
    assert listed.returncode == 0, listed.stderr
    assert (
        f"ris\t{message}\tstudy {ids['fracture']} v1\toru\tFAILED\t10 attempt(s)\tAE: busy" in listed.stdout
    )
    assert triage("outbound", "resend", "pacs", str(kos), "--reason", "", env=env).returncode == 2
    assert triage("outbound", "resend", "pacs", str(kos), "--reason", "PACS back", env=env).returncode == 0
    refused = triage("outbound", "resend", "pacs", str(sr), "--reason", "PACS back", env=env)
    assert refused.returncode == 1 and "withdrew its verdict" in refused.stderr
    assert (
        "no ris item 999999"
        in triage("outbound", "resend", "ris", "999999", "--reason", "why", env=env).stderr
    )
