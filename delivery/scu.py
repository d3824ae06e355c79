"""C-ECHO and C-STORE as a client: deliveries to the PACS, and the operator's ``triage send`` / ``echo``."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pynetdicom import AE, VerificationPresentationContexts, _config

from triage.settings import DicomPeer, Settings

logger = logging.getLogger(__name__)

_MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: presentation context IDs are odd numbers 1-255


@dataclass(frozen=True)
class SendResult:
    """What happened to one file."""

    path: Path
    status: int | None  # None: never sent (not DICOM, or the association failed)
    detail: str

    @property
    def ok(self) -> bool:
        return self.status == 0x0000


def dicom_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Yield the files under ``paths`` (folders walked recursively), sorted within each folder."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path


def echo(
    peer: DicomPeer, calling_ae_title: str, timeout_seconds: float = 10.0, tls: ssl.SSLContext | None = None
) -> int | None:
    """Send C-ECHO (over TLS if given); return the status, or None when no association could be made."""
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_seconds
    ae.requested_contexts = VerificationPresentationContexts
    assoc = ae.associate(
        peer.host, peer.port, ae_title=peer.ae_title, tls_args=(tls, peer.host) if tls else None
    )
    if not assoc.is_established:
        return None
    try:
        response = assoc.send_c_echo()
        return int(response.Status) if "Status" in response else None
    finally:
        assoc.release()


def send(
    paths: Iterable[Path], peer: DicomPeer, calling_ae_title: str, tls: ssl.SSLContext | None = None
) -> list[SendResult]:
    """C-STORE every DICOM file under ``paths`` to ``peer``, streaming each from disk (over TLS if given)."""
    results: list[SendResult] = []
    headers = []
    for path in dicom_files(paths):
        try:
            ds = dcmread(path, stop_before_pixels=True)
            headers.append((path, str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)))
        except (InvalidDicomError, AttributeError, OSError) as error:
            results.append(SendResult(path, None, f"not a DICOM file: {error}"))
    _config.STORE_SEND_CHUNKED_DATASET = True  # stream from disk: memory independent of file size
    for start in range(0, len(headers), _MAX_CONTEXTS):
        batch = headers[start : start + _MAX_CONTEXTS]
        ae = AE(ae_title=calling_ae_title)
        for context in sorted({(sop, ts) for _, sop, ts in batch}):
            ae.add_requested_context(context[0], [context[1]])
        tls_args = (tls, peer.host) if tls is not None else None
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, tls_args=tls_args)
        if not assoc.is_established:
            results.extend(SendResult(path, None, f"association with {peer} failed") for path, _, _ in batch)
            continue
        try:
            for path, _, _ in batch:
                response = assoc.send_c_store(path)
                status = int(response.Status) if "Status" in response else None
                results.append(SendResult(path, status, "sent" if status == 0 else "refused"))
        finally:
            assoc.release()
    return results


def client_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS 1.2+ towards the PACS, verifying it against ``pacs_tls_ca``; None when TLS is off."""
    if settings.pacs_tls_ca is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.pacs_tls_ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.tls_certificate is not None and settings.tls_private_key is not None:
        context.load_cert_chain(settings.tls_certificate, settings.tls_private_key)
    return context
