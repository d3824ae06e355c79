"""Access beyond the AE title, against DCMTK's peers: an idle connection
does not stall DICOM TLS, a calling AE is bound to its networks and to its certificate, and a
listener off loopback without TLS says so. Each attack ends with C-ECHO answered and a valid study
stored."""

import logging
import re
import socket

import pytest
from pynetdicom import AE
from sqlalchemy import select

from dicom_node.access import AccessGuard, peer_names, warn_if_exposed
from dicom_node.listener import Listener
from testkit import synthetic
from testkit.peers import storescu
from tests.dicom_node.test_tls import echoscu_tls
from triage.records.security import SecurityLog
from triage.records.tables import AuditEvent, Instance

pytestmark = pytest.mark.integration


@pytest.fixture
def started(make_settings):
    nodes = []

    def start(**overrides):
        node = Listener(make_settings(**overrides))
        node.start()
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.stop()


def stored(node):
    with node.database.session() as session:
        return len(session.scalars(select(Instance.id)).all())


def tls_options(pki, **extra):
    return dict(
        tls_certificate=pki / "server.crt",
        tls_private_key=pki / "server.key",
        tls_client_ca=pki / "ca.crt",
        **extra,
    )


def test_an_idle_connection_does_not_stall_the_tls_handshake_of_others(started, pki):
    node = started(**tls_options(pki))
    idle = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(3)]  # say nothing
    try:
        result = echoscu_tls(node.port, pki, with_client_certificate=True)
        assert result.returncode == 0, result.stderr
    finally:
        for connection in idle:
            connection.close()


def test_the_idle_connection_is_dropped_after_the_acse_timeout(started, pki):
    node = started(**tls_options(pki, acse_timeout_seconds=1))
    idle = socket.create_connection(("127.0.0.1", node.port))
    idle.settimeout(10)
    try:
        assert idle.recv(1) == b""  # the listener closed it: no thread waits on it forever
    finally:
        idle.close()
    assert echoscu_tls(node.port, pki, with_client_certificate=True).returncode == 0


def test_a_calling_ae_is_accepted_only_from_its_networks(started, tmp_path):
    node = started(calling_ae_addresses={"STORESCU": ["10.9.9.0/24"], "ORTHANC": ["127.0.0.1"]})
    [path] = synthetic.write([synthetic.dx()], tmp_path / "in")
    refused = storescu(node.port, path)
    assert refused.returncode != 0 and "Calling AE Title Not Recognized" in refused.stderr
    assert stored(node) == 0
    assert storescu(node.port, path, calling="ORTHANC").returncode == 0  # bound, and from its network
    assert storescu(node.port, path, calling="TESTSCU").returncode == 0  # not bound: the AE list decides
    assert stored(node) == 1


def test_a_calling_ae_bound_to_a_certificate_needs_that_certificate(started, pki, tmp_path):
    bound_elsewhere = started(**tls_options(pki, calling_ae_certificates={"ECHOSCU": "modality-7"}))
    assert echoscu_tls(bound_elsewhere.port, pki, with_client_certificate=True).returncode != 0
    bound_here = started(**tls_options(pki, calling_ae_certificates={"ECHOSCU": "client"}))
    assert echoscu_tls(bound_here.port, pki, with_client_certificate=True).returncode == 0


def test_the_guard_reads_names_and_networks_as_documented(make_settings, database):
    guard = AccessGuard(
        make_settings(
            calling_ae_addresses="CT1=10.1.2.0/24;10.1.3.4", calling_ae_certificates="CT1=ct1.example"
        ),
        SecurityLog(database),
    )
    cert = {"subject": ((("commonName", "ct1.example"),),), "subjectAltName": (("DNS", "ct1.alt"),)}
    assert peer_names(cert) == {"ct1.example", "ct1.alt"}
    assert guard.why_refused("CT1", "10.1.2.77", cert) is None
    assert guard.why_refused("CT1", "::ffff:10.1.3.4", cert) is None
    assert "not allowed from 10.1.4.1" in guard.why_refused("CT1", "10.1.4.1", cert)
    assert "certificate bound to it" in guard.why_refused("CT1", "10.1.2.77", None)
    assert guard.why_refused("OTHER", "192.0.2.1", None) is None
    with pytest.raises(ValueError, match="not an IP network"):
        make_settings(calling_ae_addresses="CT1=not-a-network")


def test_a_listener_off_loopback_without_tls_warns(make_settings, caplog):
    with caplog.at_level(logging.WARNING):
        warn_if_exposed(make_settings(dicom_host="127.0.0.1"))
        assert "clear text" not in caplog.text
        warn_if_exposed(make_settings(dicom_host="0.0.0.0"))
    assert "bound to 0.0.0.0 without TLS" in caplog.text


def security_events(node):
    node.security.flush()
    with node.database.session() as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        return [(e.action, e.actor, e.source, e.detail) for e in rows if e.action != "study.received"]


def test_refused_and_rejected_associations_and_failed_handshakes_are_audited(started, pki, tmp_path):
    plain = started(calling_ae_addresses={"STORESCU": ["10.9.9.0/24"]})
    [path] = synthetic.write([synthetic.dx()], tmp_path / "in")
    assert storescu(plain.port, path).returncode != 0  # from the wrong network
    assert storescu(plain.port, path, calling="INTRUDER").returncode != 0  # not allowed to send at all
    events = security_events(plain)
    assert ("association.refused", "dicom:STORESCU", "127.0.0.1",
            "calling AE STORESCU is not allowed from 127.0.0.1") in events  # fmt: skip
    assert ("association.rejected", "dicom:INTRUDER", "127.0.0.1",
            "calling AE INTRUDER is not allowed to send") in events  # fmt: skip

    secured = started(**tls_options(pki))
    assert echoscu_tls(secured.port, pki, with_client_certificate=False).returncode != 0
    [(actor, source, detail)] = [e[1:] for e in security_events(secured) if e[0] == "tls.failed"]
    assert (actor, source) == ("dicom:?", "127.0.0.1") and "CERTIFICATE" in detail.upper()
    assert echoscu_tls(secured.port, pki, with_client_certificate=True).returncode == 0


def times(detail):
    found = re.search(r"\((\d+) times from ", detail)
    return int(found.group(1)) if found else 1


def test_a_flood_of_rejected_associations_is_counted_in_a_few_audit_rows_and_storage_goes_on(
    started, tmp_path
):
    """Identical events are counted into one row a second: 40 probes are a handful of writes."""
    node = started()
    prober = AE(ae_title="PROBE")
    prober.add_requested_context("1.2.840.10008.1.1")
    for _ in range(40):
        association = prober.associate("127.0.0.1", node.port, ae_title="TRIAGE")
        assert association.is_rejected
    [path] = synthetic.write([synthetic.dx()], tmp_path / "in")
    assert storescu(node.port, path).returncode == 0
    events = security_events(node)
    assert {(action, actor) for action, actor, _, _ in events} == {("association.rejected", "dicom:PROBE")}
    assert sum(times(detail) for *_, detail in events) == 40
    assert len(events) <= 10
    assert stored(node) == 1
