"""C-ECHO and C-STORE as a client: deliveries to the PACS, and the operator's ``triage send`` / ``echo``."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID
from pynetdicom import AE, VerificationPresentationContexts, _config
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
    Verification,
)

from triage.settings import Settings
from triage.values import DicomPeer

logger = logging.getLogger(__name__)

_MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: presentation context IDs are odd numbers 1-255


@dataclass(frozen=True)
class SendResult:
    """What happened to one object."""

    path: Path
    status: int | None  # None: never sent (not DICOM, no association, dropped, no answer)
    detail: str
    permanent: bool = False  # the peer will never take it as it is: none of its SOP classes accepted
    sent: Path | None = None  # the file actually sent (an object's alternate, when the peer took that)

    @property
    def ok(self) -> bool:
        return self.status == 0x0000


@dataclass(frozen=True)
class Outgoing:
    """One object to store: its file, and the same content in other SOP classes, most preferred first
    (a PACS that does not take Comprehensive 3D SR usually takes Comprehensive SR)."""

    path: Path
    alternates: tuple[Path, ...] = ()

    @property
    def candidates(self) -> tuple[Path, ...]:
        return (self.path, *self.alternates)


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


def request_commitment(
    peer: DicomPeer,
    calling_ae_title: str,
    transaction_uid: str,
    references: Sequence[tuple[str, str]],
    tls: ssl.SSLContext | None = None,
    timeout_seconds: float = 30.0,
) -> tuple[bool, str]:
    """N-ACTION "Request Storage Commitment" (PS3.4 J.3.2) for (SOP Class UID, SOP Instance UID)
    pairs; whether the PACS took the request, and what it said. Its report comes later, on an
    association of its own (or on this one, which triage does not wait for)."""
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_seconds
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate(
        peer.host, peer.port, ae_title=peer.ae_title, tls_args=(tls, peer.host) if tls else None
    )
    if not assoc.is_established:
        return False, f"no association with {peer} for storage commitment"
    request = Dataset()
    request.TransactionUID = transaction_uid
    request.ReferencedSOPSequence = [_reference(c, i) for c, i in references]
    try:
        status, _ = assoc.send_n_action(
            request, 1, StorageCommitmentPushModel, StorageCommitmentPushModelInstance
        )
    except (ValueError, RuntimeError, OSError) as error:
        return False, f"N-ACTION failed: {type(error).__name__}"
    finally:
        if assoc.is_established:
            assoc.release()
    if "Status" not in status:
        return False, "no answer to N-ACTION (DIMSE timeout or the association dropped)"
    code = int(status.Status)
    return code == 0x0000, "requested" if code == 0 else f"N-ACTION status 0x{code:04X}"


def _reference(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class_uid
    item.ReferencedSOPInstanceUID = sop_instance_uid
    return item


def sop_reference(path: Path) -> tuple[str, str]:
    """(SOP Class UID, SOP Instance UID) of a stored result object."""
    ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
    return str(ds.SOPClassUID), str(ds.SOPInstanceUID)


def _header(path: Path) -> tuple[str, str] | str:
    """(SOP Class UID, Transfer Syntax UID) of a file, or why it is not DICOM."""
    try:
        ds = dcmread(path, stop_before_pixels=True)
        return str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)
    except (InvalidDicomError, AttributeError, OSError) as error:
        return f"not a DICOM file ({type(error).__name__})"  # its message may quote a path or a value


def _store_one(assoc: Any, item: Outgoing, headers: dict[Path, tuple[str, str]]) -> SendResult:
    """C-STORE the first of the object's files whose class and transfer syntax the peer accepted;
    every failure is a result, never an exception (PS3.4 B.2.3 statuses come back as they are)."""
    accepted = {(str(c.abstract_syntax), str(c.transfer_syntax[0])) for c in assoc.accepted_contexts}
    chosen = next((path for path in item.candidates if headers.get(path) in accepted), None)
    if chosen is None:
        classes = ", ".join(sorted({UID(headers[p][0]).name for p in item.candidates if p in headers}))
        return SendResult(item.path, None, f"the peer accepts none of: {classes}", permanent=True)
    try:
        response = assoc.send_c_store(chosen)
    except (ValueError, RuntimeError, OSError) as error:
        # The type only: the message may quote a patient's value, and it is shown on the page.
        return SendResult(item.path, None, f"C-STORE failed: {type(error).__name__}")
    if "Status" not in response:
        return SendResult(item.path, None, "no answer (DIMSE timeout or the association dropped)")
    status = int(response.Status)
    return SendResult(item.path, status, "sent" if status == 0 else "refused", sent=chosen)


def _next_batch(
    pending: Sequence[Outgoing], headers: dict[Path, tuple[str, str]]
) -> tuple[list[Outgoing], set[tuple[str, str]]]:
    """The leading objects whose presentation contexts fit one association (one is Verification's)."""
    batch: list[Outgoing] = []
    contexts: set[tuple[str, str]] = set()
    for item in pending:
        needed = contexts | {headers[p] for p in item.candidates if p in headers}
        if batch and len(needed) > _MAX_CONTEXTS - 1:
            break
        batch.append(item)
        contexts = needed
    return batch, contexts


def store_objects(
    items: Sequence[Outgoing],
    peer: DicomPeer,
    calling_ae_title: str,
    tls: ssl.SSLContext | None = None,
    timeout_seconds: float = 30.0,
) -> list[SendResult]:
    """C-STORE each object (streamed from disk) in as few associations as the contexts allow; one
    object's failure never stops the others, and an association that drops is opened again."""
    results: dict[Path, SendResult] = {}
    headers: dict[Path, tuple[str, str]] = {}
    for item in items:
        for path in item.candidates:
            found = _header(path)
            if isinstance(found, str):
                results.setdefault(item.path, SendResult(item.path, None, found, permanent=True))
            else:
                headers[path] = found
    _config.STORE_SEND_CHUNKED_DATASET = True  # stream from disk: memory independent of file size
    pending = [item for item in items if item.path not in results]
    while pending:
        batch, contexts = _next_batch(pending, headers)
        pending = pending[len(batch) :]
        ae = AE(ae_title=calling_ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_seconds
        # Verification too, so that a PACS that takes none of the classes still accepts the
        # association, and the refusal shows as what it is (permanent) rather than as a network fault.
        ae.add_requested_context(Verification)
        for sop_class, syntax in sorted(contexts):
            ae.add_requested_context(sop_class, [syntax])
        assoc = ae.associate(
            peer.host, peer.port, ae_title=peer.ae_title, tls_args=(tls, peer.host) if tls else None
        )
        if not assoc.is_established:
            unsent = batch + pending
            results.update({i.path: SendResult(i.path, None, f"no association with {peer}") for i in unsent})
            break
        try:
            while batch and assoc.is_established:
                item = batch.pop(0)
                results[item.path] = _store_one(assoc, item, headers)
        finally:
            if assoc.is_established:
                assoc.release()
            else:
                assoc.abort()
        pending = batch + pending  # what a dropped association left unsent goes on the next one
    return [results[item.path] for item in items]


def send(
    paths: Iterable[Path], peer: DicomPeer, calling_ae_title: str, tls: ssl.SSLContext | None = None
) -> list[SendResult]:
    """C-STORE every DICOM file under ``paths`` to ``peer`` (folders walked), streaming each from disk."""
    return store_objects([Outgoing(path) for path in dicom_files(paths)], peer, calling_ae_title, tls)


def client_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS 1.2+ towards the PACS, verifying it against ``pacs_tls_ca``; None when TLS is off."""
    if settings.pacs_tls_ca is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.pacs_tls_ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.tls_certificate is not None and settings.tls_private_key is not None:
        context.load_cert_chain(settings.tls_certificate, settings.tls_private_key)
    return context
