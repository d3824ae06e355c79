"""Who may open an association, beyond the calling AE title: the TLS handshake done where a slow
peer cannot stall anyone else, a source-address allow-list per calling AE, and a client
certificate bound to the AE title it may use.

An AE title is a string any host can send. A site that knows where its modalities sit names their
networks (``calling_ae_addresses``); with DICOM TLS, it names the certificate each AE presents
(``calling_ae_certificates``, matched against the subject CN or a DNS/URI subjectAltName).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
from typing import Any

from pynetdicom import AE
from pynetdicom.events import Event
from pynetdicom.transport import ThreadedAssociationServer

from triage.records.audit_actions import AuditAction
from triage.records.security import SecurityLog
from triage.settings import Settings

logger = logging.getLogger(__name__)

# PS3.8 9.3.4 A-ASSOCIATE-RJ: rejected-permanent (1), by the service user (1), calling AE title
# not recognised (3).
CALLING_AE_NOT_RECOGNISED = (0x01, 0x01, 0x03)


class HandshakeInThread(ThreadedAssociationServer):
    """pynetdicom's server with the TLS handshake moved from the single accept thread into each
    connection's own thread, bounded by the ACSE timeout: an idle TCP connection to a TLS port
    would otherwise block every association that comes after it. A failed handshake is audited."""

    security: SecurityLog | None = None

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        client, address = self.socket.accept()
        return client, address

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        context = self.ssl_context
        if context is not None:
            try:
                request.settimeout(self.ae.acse_timeout)
                request = context.wrap_socket(request, server_side=True)
                request.settimeout(None)  # as pynetdicom's own accepted sockets: it polls with select
            except (OSError, ssl.SSLError, ValueError) as error:
                why = str(getattr(error, "reason", None) or type(error).__name__)
                logger.warning("TLS handshake from %s failed: %s", client_address[0], why)
                if self.security is not None:
                    self.security.record(
                        actor="dicom:?",
                        action=AuditAction.TLS_FAILED,
                        source=str(client_address[0]),
                        detail=why,
                    )
                self.shutdown_request(request)
                return
        super().process_request_thread(request, client_address)


def start_server(
    ae: AE,
    settings: Settings,
    ssl_context: ssl.SSLContext | None,
    handlers: list[Any],
    security: SecurityLog,
) -> HandshakeInThread:
    """``ae.start_server(block=False)`` with ``HandshakeInThread`` as the server."""
    server = ae.make_server(
        (settings.dicom_host, settings.dicom_port),
        ssl_context=ssl_context,
        evt_handlers=handlers,
        server_class=HandshakeInThread,
    )
    assert isinstance(server, HandshakeInThread)
    server.security = security
    thread = threading.Thread(target=server.serve_forever, name="dicom-accept", daemon=True)
    thread.start()
    ae._servers.append(server)
    return server


def peer_names(certificate: dict[str, Any] | None) -> set[str]:
    """The names a verified peer certificate vouches for: subject CN, DNS and URI subjectAltNames."""
    if not certificate:
        return set()
    names = {value for rdn in certificate.get("subject", ()) for key, value in rdn if key == "commonName"}
    names |= {value for kind, value in certificate.get("subjectAltName", ()) if kind in ("DNS", "URI")}
    return names


class AccessGuard:
    """EVT_REQUESTED: refuse a calling AE from an address or with a certificate it is not bound to;
    EVT_REJECTED: audit what pynetdicom itself rejected (calling or called AE title, the limit)."""

    def __init__(self, settings: Settings, security: SecurityLog) -> None:
        self._security = security
        self._called = settings.ae_title
        self._networks = {
            ae: tuple(ipaddress.ip_network(n, strict=False) for n in networks)
            for ae, networks in settings.calling_ae_addresses.items()
        }
        self._certificates = dict(settings.calling_ae_certificates)

    def why_refused(self, calling: str, address: str, certificate: dict[str, Any] | None) -> str | None:
        networks = self._networks.get(calling)
        if networks is not None:
            try:
                host = ipaddress.ip_address(address.split("%")[0])
            except ValueError:
                return f"calling AE {calling} from an address that is not an IP address"
            if isinstance(host, ipaddress.IPv6Address) and host.ipv4_mapped is not None:
                host = host.ipv4_mapped
            if not any(host in network for network in networks):
                return f"calling AE {calling} is not allowed from {address}"
        expected = self._certificates.get(calling)
        if expected is not None and expected not in peer_names(certificate):
            return f"calling AE {calling} did not present the certificate bound to it ({expected})"
        return None

    def refused(self, event: Event) -> bool:
        """EVT_REQUESTED: reject (and say True) when the caller is not where, or who, it must be."""
        request = event.assoc.requestor.primitive
        calling = str(request.calling_ae_title).strip() if request is not None else ""
        address = str(event.assoc.requestor.address)
        sock = getattr(event.assoc.dul.socket, "socket", None)
        certificate = sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None
        why = self.why_refused(calling, address, certificate)
        if why is not None:
            event.assoc.acse.send_reject(*CALLING_AE_NOT_RECOGNISED)
            event.assoc.kill()
            logger.warning("association refused: %s", why)
            self._security.record(
                actor=f"dicom:{calling}", action=AuditAction.ASSOCIATION_REFUSED, source=address, detail=why
            )
            return True
        return False

    def rejected(self, event: Event) -> None:
        """EVT_REJECTED: pynetdicom rejected an association during negotiation; say why."""
        request = event.assoc.requestor.primitive
        calling = str(request.calling_ae_title).strip() if request is not None else ""
        called = str(request.called_ae_title).strip() if request is not None else ""
        allowed = [title.strip() for title in event.assoc.ae.require_calling_aet]
        if allowed and calling not in allowed:
            why = f"calling AE {calling} is not allowed to send"
        elif called != self._called:
            why = f"called AE {called} is not this node's ({self._called})"
        else:
            why = "the association limit was reached, or the user identity was not accepted"
        self._security.record(
            actor=f"dicom:{calling}", action=AuditAction.ASSOCIATION_REJECTED,
            source=str(event.assoc.requestor.address), detail=why,
        )  # fmt: skip


def warn_if_exposed(settings: Settings) -> None:
    """A listener off loopback without TLS carries patient data in clear text: say so at start."""
    try:
        loopback = ipaddress.ip_address(settings.dicom_host).is_loopback
    except ValueError:
        loopback = settings.dicom_host == "localhost"
    if not loopback and settings.tls_certificate is None:
        logger.warning(
            "the DICOM listener is bound to %s without TLS: images and reports cross the network in "
            "clear text, and calling AE titles can be spoofed. Use DICOM TLS (TRIAGE_TLS_CERTIFICATE), a "
            "network only the PACS and modalities reach, and TRIAGE_CALLING_AE_ADDRESSES",
            settings.dicom_host,
        )
