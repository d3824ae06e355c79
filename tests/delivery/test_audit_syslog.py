"""The audit log forwarded as DICOM audit messages (PS3.15 A.5) over RFC 5424 syslog, to a
collector run in the test process over TCP and over TLS: every event arrives in order, none is
lost while the collector is down, none is sent twice after a restart, and every action triage
audits is a DICOM audit event."""

import re
import ssl
import threading
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from sqlalchemy import select

from delivery import audit_syslog
from testkit import synthetic
from testkit.peers import REPO, free_port
from testkit.syslog import Collector
from tests.dicom_node.test_studies import T0, receive
from triage.records import store
from triage.records.tables import AuditCursor, AuditEvent


@pytest.fixture
def study(database):
    dataset = synthetic.dx()
    receive(database, [dataset], T0)
    return dataset


@pytest.fixture
def study_events(database, study):
    with database.session() as session:
        store.audit(
            session, actor="local:rad", action="study.viewed", source="10.1.2.3", now=T0, study_ids=[1]
        )
        store.audit(
            session, actor="anonymous", action="token.refused", source="10.6.6.6", now=T0, detail="unknown"
        )
    with database.session() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def cursor(database):
    with database.session() as session:
        found = session.get(AuditCursor, audit_syslog.CURSOR)
        return (found.last_event_id, found.detail) if found else (0, "")


def test_events_arrive_as_dicom_audit_messages_in_order(make_settings, database, study, study_events):
    port = free_port()
    collector = Collector(port)
    try:
        settings = make_settings(audit_syslog_url=f"tcp://127.0.0.1:{port}", audit_site_id="Region H")
        forwarder = audit_syslog.AuditForwarder(settings, database, "node-1")
        assert forwarder.forward() == len(study_events)
        _wait_for(lambda: len(collector.frames) == len(study_events))
    finally:
        collector.stop()
    messages = collector.messages()
    assert [number for number, _ in messages] == [event.id for event in study_events]
    by_action = {event.action: xml for event, (_, xml) in zip(study_events, messages, strict=True)}
    viewed = by_action["study.viewed"]
    assert viewed.find("EventIdentification/EventID").get("csd-code") == "110103"
    assert viewed.find("EventIdentification").get("EventOutcomeIndicator") == "0"
    participant = viewed.find("ActiveParticipant")
    assert (participant.get("UserID"), participant.get("NetworkAccessPointID")) == ("local:rad", "10.1.2.3")
    objects = {o.find("ParticipantObjectIDTypeCode").get("csd-code"): o.get("ParticipantObjectID")
               for o in viewed.findall("ParticipantObjectIdentification")}  # fmt: skip
    assert objects == {"2": study.PatientID, "110180": study.StudyInstanceUID}
    assert viewed.find("AuditSourceIdentification").get("AuditEnterpriseSiteID") == "Region H"
    assert study.PatientName.family_name not in ET.tostring(
        viewed, encoding="unicode"
    )  # the ID, never the name
    refused = by_action["token.refused"]
    assert refused.find("EventIdentification/EventID").get("csd-code") == "110114"
    assert refused.find("EventIdentification").get("EventOutcomeIndicator") == "4"
    assert refused.find("ParticipantObjectIdentification") is None
    assert cursor(database) == (study_events[-1].id, "")


def test_nothing_is_lost_while_the_collector_is_down_or_sent_twice_after_a_restart(
    make_settings, database, study_events
):
    port = free_port()
    settings = make_settings(audit_syslog_url=f"tcp://127.0.0.1:{port}")
    assert audit_syslog.AuditForwarder(settings, database).forward() == 0  # nobody listens
    assert cursor(database) == (0, "not reachable: ConnectionRefusedError")
    collector = Collector(port)
    try:
        assert audit_syslog.AuditForwarder(settings, database).forward() == len(study_events)
        with database.session() as session:
            store.audit(
                session, actor="local:rad", action="image.viewed", source="10.1.2.3", now=T0, study_ids=[1]
            )
        assert audit_syslog.AuditForwarder(settings, database).forward() == 1  # a restarted forwarder
        _wait_for(lambda: len(collector.frames) == len(study_events) + 1)
    finally:
        collector.stop()
    numbers = [number for number, _ in collector.messages()]
    assert numbers == sorted(set(numbers)) and len(numbers) == len(study_events) + 1


def test_over_tls_the_collector_is_verified_and_a_stranger_gets_nothing(
    make_settings, database, study_events, pki
):
    port = free_port()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(pki / "server.crt", pki / "server.key")
    collector = Collector(port, server)
    try:
        untrusted = make_settings(audit_syslog_url=f"tls://127.0.0.1:{port}")  # the system's CAs only
        assert audit_syslog.AuditForwarder(untrusted, database).forward() == 0
        assert cursor(database)[0] == 0 and "SSL" in cursor(database)[1]
        trusted = make_settings(audit_syslog_url=f"tls://127.0.0.1:{port}", audit_syslog_ca=pki / "ca.crt")
        assert audit_syslog.AuditForwarder(trusted, database).forward() == len(study_events)
        _wait_for(lambda: len(collector.frames) == len(study_events))
    finally:
        collector.stop()
    assert [number for number, _ in collector.messages()] == [event.id for event in study_events]


def test_every_action_triage_audits_is_a_dicom_audit_event():
    """One vocabulary: each action carries its DICOM audit message, and no writer spells an action
    as a string of its own (which would go out as a generic Application Activity)."""
    from triage.records.audit_actions import APPLICATION_ACTIVITY, AuditAction, dicom_event

    assert all(dicom_event(action) != APPLICATION_ACTIVITY for action in AuditAction)
    assert dicom_event("model.promoted").type_code == ("110131", "Software Configuration")
    assert dicom_event("something.an_older_release_wrote") == APPLICATION_ACTIVITY
    spelled = []
    for path in [*Path(REPO).glob("*/**/*.py")]:
        if ".venv" in path.parts or "tests" in path.parts or "build" in path.parts:
            continue
        text = path.read_text()
        spelled += re.findall(r'action="([a-z_]+\.[a-z_]+)"', text)
        spelled += re.findall(r'audit\(\s*session,\s*principal,\s*"([a-z_]+\.[a-z_]+)"', text)
    assert spelled == []


def _wait_for(condition, seconds=10.0):
    import time

    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert condition()


def test_a_collector_address_is_checked_at_start(make_settings):
    for wrong in ("udp://host:514", "tls://host", "collector:6514", "tcp://host:99999"):
        with pytest.raises(ValueError, match=r"collector|port"):
            make_settings(audit_syslog_url=wrong)


def test_the_listeners_forwarding_thread_sends_only_while_leading(make_settings, database, study_events):
    port = free_port()
    collector = Collector(port)
    leading = threading.Event()
    settings = make_settings(audit_syslog_url=f"tcp://127.0.0.1:{port}")
    assert audit_syslog.start(make_settings(), database, leading.is_set) == []  # no collector: no thread
    [thread] = audit_syslog.start(settings, database, leading.is_set)
    try:
        import time

        time.sleep(0.5)
        assert collector.frames == []  # another process leads
        leading.set()
        _wait_for(lambda: len(collector.frames) == len(study_events))
    finally:
        thread.stop()
        collector.stop()


@pytest.mark.integration
def test_an_event_that_commits_after_a_later_one_is_forwarded_not_skipped(make_settings, postgres_url):
    """On PostgreSQL ids are taken at insert: the first writer holds id 1 open while the second commits
    id 2. Forwarding id 2 then would move the cursor past id 1 for good; nothing goes until both are
    settled, then both go, in order. The sealer waits the same way."""
    from sqlalchemy import text

    from triage.records import audit_chain
    from triage.records.db import Database, migrate

    migrate(postgres_url)
    database = Database(postgres_url)
    with database.session() as session:
        session.execute(text("TRUNCATE audit_seals, audit_events, audit_cursors RESTART IDENTITY"))
    port = free_port()
    settings = make_settings(audit_syslog_url=f"tcp://127.0.0.1:{port}")
    collector = Collector(port)
    slow = database.session()
    try:
        first = slow.__enter__()
        store.audit(first, actor="local:rad", action="study.viewed", source="10.1.2.3", now=T0, detail="1")
        first.flush()  # id 1 taken, not committed
        with database.session() as second:
            store.audit(
                second, actor="local:rad", action="image.viewed", source="10.1.2.3", now=T0, detail="2"
            )
        forwarder = audit_syslog.AuditForwarder(settings, database)
        assert forwarder.forward() == 0, "id 2 is visible, but id 1 may still commit below it"
        with database.session() as session:
            assert audit_chain.seal(session, T0 + audit_chain.SEAL_GRACE * 2) is None
        slow.__exit__(None, None, None)  # the first writer commits id 1
        assert forwarder.forward() == 2
        _wait_for(lambda: len(collector.frames) == 2)
        with database.session() as session:
            sealed = audit_chain.seal(session, T0 + audit_chain.SEAL_GRACE * 2)
            assert sealed is not None and (sealed.first_event_id, sealed.last_event_id) == (1, 2)
    finally:
        collector.stop()
        database.dispose()
    assert [number for number, _ in collector.messages()] == [1, 2]
    assert cursor_of(database) == 2


def cursor_of(database):
    with database.session() as session:
        return session.get_one(AuditCursor, audit_syslog.CURSOR).last_event_id
