"""The lead over a database: one leader at a time, handed on at a clean stop, and taken over when
the leader's network dies without a word (a loopback proxy that stops forwarding, no FIN)."""

import threading

import pytest
from fastapi.testclient import TestClient

from testkit.peers import wait_until
from testkit.proxy import CuttableProxy
from triage.records import queries
from triage.records.db import Database, migrate
from triage.records.leadership import Leadership, leader_state
from worklist.app import create_app

pytestmark = pytest.mark.integration


def test_a_leader_cut_off_without_a_fin_loses_the_lead_and_another_takes_it(postgres_url, settings, tmp_path):
    migrate(postgres_url)
    port = int(postgres_url.rsplit(":", 1)[1].split("/", 1)[0])
    proxy = CuttableProxy(port)
    cut_off = Database(postgres_url.replace(f":{port}/", f":{proxy.port}/"))
    direct = Database(postgres_url)
    first = Leadership(cut_off, tmp_path / "a.lock", lease_seconds=3)
    second = Leadership(direct, tmp_path / "b.lock", lease_seconds=3)
    try:
        assert first.try_acquire() and first.held
        assert not second.try_acquire(), "one leader at a time"
        proxy.cut()
        # The cut-off leader's next renewal hangs on the dead link, as a leader's monitor would.
        threading.Thread(target=first.still_held, daemon=True).start()
        wait_until(lambda: not first.held, timeout=10)
        with direct.reading() as session:
            lease = leader_state(session, direct.now())
        assert lease.holder == first.holder and lease.without_leader_seconds == 0, (
            "it gave the lead up before its lease lapsed at the server: never two leaders"
        )

        def nobody_leads():
            with direct.reading() as session:
                return queries.degraded(session, direct.now())

        [why] = wait_until(nobody_leads, timeout=10)
        assert why.startswith("no listener has led for ")
        (settings.queue_dir / "messages").mkdir(parents=True, exist_ok=True)
        with TestClient(create_app(direct, settings)) as client:
            assert client.get("/readyz").json()["degraded"][0].startswith("no listener has led for")
            scraped = client.get("/metrics").text
        [gauge] = [line for line in scraped.splitlines() if line.startswith("triage_seconds_without_leader ")]
        assert float(gauge.split()[1]) > 0

        assert second.try_acquire(), "the lease lapsed: another listener takes the lead"
        with direct.reading() as session:
            assert leader_state(session, direct.now()).holder == second.holder
            assert queries.degraded(session, direct.now()) == []
    finally:
        proxy.close()
        second.release()
        for database in (cut_off, direct):
            database.dispose()
