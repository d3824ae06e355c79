"""Builds the listener's application entity: contexts, timeouts, allow-list, TLS; binds the handlers."""

from __future__ import annotations

import logging
import ssl

from pydicom import uid
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, _config, evt
from pynetdicom.events import Event
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from dicom_node.access import AccessGuard, start_server, warn_if_exposed
from dicom_node.commitment import CommitmentReports
from dicom_node.handlers import StorageHandlers
from triage.records.security import SecurityLog
from triage.settings import Settings

logger = logging.getLogger(__name__)

# Every transfer syntax the issue names; pixel data in each decodes with the pylibjpeg plugins.
TRANSFER_SYNTAXES = [
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLossless,
    uid.JPEGLosslessSV1,
    uid.JPEGLSLossless,
    uid.JPEGLSNearLossless,
    uid.JPEG2000Lossless,
    uid.JPEG2000,
    uid.RLELossless,
]
assert set(TRANSFER_SYNTAXES) <= set(ALL_TRANSFER_SYNTAXES)
# Verification SOP Class (PS3.4 A.4); pydicom.uid has no constant for it.
VERIFICATION = uid.UID("1.2.840.10008.1.1")


class AllowListEmpty(ValueError):
    """The calling-AE allow-list is empty, so no peer could ever send."""


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """A server TLS context (TLS 1.2 or newer), requiring client certificates when a CA is given."""
    if settings.tls_certificate is None or settings.tls_private_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_certificate, settings.tls_private_key)
    if settings.tls_client_ca is not None:
        context.load_verify_locations(settings.tls_client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def build_ae(settings: Settings) -> AE:
    """Create the listener's AE: Verification and every storage SOP class, with our limits.

    Raises:
        AllowListEmpty: no calling AE is allowed; the message says how to allow some.
    """
    if not settings.allowed_calling_aes:
        raise AllowListEmpty(
            "TRIAGE_ALLOWED_CALLING_AES is empty, so no PACS or modality may send to triage. "
            "Set it to the calling AE titles allowed to send, e.g. TRIAGE_ALLOWED_CALLING_AES=PACS,ORTHANC, "
            "or to * to accept any caller on a network you trust."
        )
    # pynetdicom reads these module settings; this is the one place we set them. Instances stream to
    # a file as they arrive, so memory does not grow with instance size (see dicom_node/spool.py).
    _config.STORE_RECV_CHUNKED_DATASET = True
    _config.LOG_HANDLER_LEVEL = "none"

    ae = AE(ae_title=settings.ae_title)
    ae.add_supported_context(VERIFICATION)
    for context in AllStoragePresentationContexts:
        assert context.abstract_syntax is not None
        ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)
    if settings.pacs_storage_commitment:
        # The PACS reports on an association it opens, acting as the class's SCP (PS3.4 J.3.3):
        # accept it in either role, whatever role selection it proposes.
        ae.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
    ae.require_called_aet = True
    ae.require_calling_aet = [] if settings.accepts_any_calling_ae else list(settings.allowed_calling_aes)
    ae.maximum_associations = settings.max_associations
    ae.acse_timeout = settings.acse_timeout_seconds
    ae.dimse_timeout = settings.dimse_timeout_seconds
    ae.network_timeout = settings.network_timeout_seconds
    ae.maximum_pdu_size = settings.maximum_pdu_bytes
    return ae


def start_listener(
    settings: Settings,
    handlers: StorageHandlers,
    security: SecurityLog,
    reports: CommitmentReports | None = None,
) -> ThreadedAssociationServer:
    """Start serving in background threads; stop with ``server.shutdown()``. Refused associations
    and failed TLS handshakes go to ``security`` (the audit log)."""
    ae = build_ae(settings)
    handlers.spools.install()
    guard = AccessGuard(settings, security)

    def on_requested(event: Event) -> None:
        if not guard.refused(event):
            handlers.guard.on_requested(event)

    warn_if_exposed(settings)
    server = start_server(
        ae,
        settings,
        tls_context(settings),
        [
            (evt.EVT_REQUESTED, on_requested),
            (evt.EVT_REJECTED, guard.rejected),
            (evt.EVT_C_ECHO, handlers.on_echo),
            (evt.EVT_C_STORE, handlers.on_store),
            (evt.EVT_CONN_CLOSE, handlers.on_closed),
            *([(evt.EVT_N_EVENT_REPORT, reports.on_event_report)] if reports is not None else []),
        ],
        security,
    )
    assert server is not None, "start_server(block=False) returns the server"
    callers = "any calling AE" if settings.accepts_any_calling_ae else ", ".join(settings.allowed_calling_aes)
    logger.info(
        "DICOM listener %s on %s:%d (TLS %s), accepting %s",
        settings.ae_title,
        settings.dicom_host,
        server.server_address[1],
        "on" if settings.tls_certificate else "off",
        callers,
    )
    return server
