"""Readiness against real peers: a DCMTK storescp as the PACS (C-ECHO), the machine's Redis and
RabbitMQ as brokers, and the embedded queue's folder."""

import subprocess

import pytest
from fastapi.testclient import TestClient

from delivery.pacs import check_reachable
from testkit.peers import PEER_ENV, free_port, require_tool, stop, wait_until
from worklist.app import create_app
from worklist.operations import CachedCheck, queue_check

pytestmark = pytest.mark.integration


@pytest.fixture
def pacs(tmp_path):
    """DCMTK's storescp: answers C-ECHO as any PACS does."""
    port = free_port()
    process = subprocess.Popen(
        [require_tool("storescp"), "-aet", "PACS", "-od", str(tmp_path), str(port)],
        env=PEER_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield port, process
    stop(process)


def test_readyz_reports_a_pacs_that_answers_and_one_that_does_not(make_settings, database, pacs):
    port, process = pacs
    settings = make_settings(pacs=f"PACS@127.0.0.1:{port}", metrics_cache_seconds=0)
    (settings.queue_dir / "messages").mkdir(parents=True)
    with TestClient(create_app(database, settings)) as client:
        assert client.get("/readyz").json()["pacs"] == "unknown", "nothing has looked at the PACS yet"
        assert "triage_pacs_reachable NaN" in client.get("/metrics").text
        # the process that delivers (the listener's) checks the PACS; the web app reads what it found
        wait_until(lambda: check_reachable(settings, database), timeout=20)
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["pacs"] == "reachable"
        assert "triage_pacs_reachable 1.0" in client.get("/metrics").text
        stop(process)
        assert not check_reachable(settings, database)
        ready = client.get("/readyz")
        assert ready.status_code == 200, "the PACS being away does not make triage unready"
        assert ready.json()["pacs"] == "unreachable"
        assert "triage_pacs_reachable 0.0" in client.get("/metrics").text


def test_readyz_fails_when_the_embedded_queue_folder_is_gone(settings, database):
    with TestClient(create_app(database, settings)) as client:
        gone = client.get("/readyz")
    assert gone.status_code == 503 and gone.json() == {
        "database": True,
        "queue": False,
        "pacs": "not configured",
        "studies_by_state": {},
        "storage": "ok",
        "degraded": [],
    }


@pytest.mark.parametrize(
    ("url", "reachable"),
    [
        ("redis://127.0.0.1:6379/0", True),
        ("amqp://guest:guest@127.0.0.1:5672//", True),
        (f"redis://127.0.0.1:{free_port()}/0", False),
    ],
)
def test_the_queue_check_connects_to_a_real_broker(make_settings, url, reachable):
    assert queue_check(make_settings(broker_url=url))() is reachable


def test_slow_checks_are_cached():
    calls = []
    check = CachedCheck(lambda: calls.append(1) or True, ttl_seconds=60)
    assert check() and check() and len(calls) == 1
