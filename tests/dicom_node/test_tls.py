"""DICOM TLS (PS3.15 B.1) with client certificates, against DCMTK's echoscu built with OpenSSL."""

import subprocess

import pytest

from testkit.peers import PEER_ENV, require_tool

pytestmark = pytest.mark.integration


@pytest.fixture
def tls_listener(make_settings, pki):
    from dicom_node.listener import Listener

    node = Listener(
        make_settings(
            tls_certificate=pki / "server.crt",
            tls_private_key=pki / "server.key",
            tls_client_ca=pki / "ca.crt",
        )
    )
    node.start()
    yield node
    node.stop()


def echoscu_tls(port, pki, *, with_client_certificate):
    credentials = ["client.key", "client.crt"] if with_client_certificate else []
    args = ["+tls", *credentials] if credentials else ["+tla"]  # +tla: TLS without a certificate
    return subprocess.run(
        [
            require_tool("echoscu"),
            "-aet",
            "ECHOSCU",
            "-aec",
            "TRIAGE",
            *args,
            "+cf",
            "ca.crt",
            "+px",
            "127.0.0.1",
            str(port),
        ],
        cwd=pki,
        capture_output=True,
        text=True,
        env=PEER_ENV,
        timeout=30,
        check=False,
    )


def test_tls_echo_with_a_client_certificate_succeeds(tls_listener, pki):
    result = echoscu_tls(tls_listener.port, pki, with_client_certificate=True)
    assert result.returncode == 0, result.stderr


def test_tls_without_a_client_certificate_is_refused(tls_listener, pki):
    result = echoscu_tls(tls_listener.port, pki, with_client_certificate=False)
    assert result.returncode != 0


def test_plain_tcp_to_a_tls_listener_is_refused(tls_listener):
    result = subprocess.run(
        [require_tool("echoscu"), "-aet", "ECHOSCU", "-aec", "TRIAGE", "127.0.0.1", str(tls_listener.port)],
        capture_output=True,
        text=True,
        env=PEER_ENV,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0


def test_results_can_be_sent_to_a_pacs_over_tls_with_our_client_certificate(
    tls_listener, pki, make_settings, tmp_path
):
    from delivery import scu
    from testkit import synthetic
    from triage.values import DicomPeer

    settings = make_settings(
        tls_certificate=pki / "client.crt", tls_private_key=pki / "client.key", pacs_tls_ca=pki / "ca.crt"
    )
    paths = synthetic.write([synthetic.dx()], tmp_path / "result")
    peer = DicomPeer.parse(f"TRIAGE@127.0.0.1:{tls_listener.port}")
    [sent] = scu.send(paths, peer, "TESTSCU", scu.client_tls_context(settings))
    assert sent.ok, sent.detail
    untrusted = make_settings(pacs_tls_ca=pki / "server.crt")  # not the CA: the PACS cannot be verified
    [refused] = scu.send(paths, peer, "TESTSCU", scu.client_tls_context(untrusted))
    assert not refused.ok
