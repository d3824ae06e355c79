"""C-ECHO and C-STORE as a client: the operator's ``triage send`` and ``triage echo``."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pynetdicom import AE, _config

from dicom_node.scp import VERIFICATION
from triage.settings import DicomPeer
from worklist import store
from worklist.db import Database

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
    ae.add_requested_context(VERIFICATION)
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


class Deliverer:
    """Stores finished results at the PACS from the persisted deliveries, with backoff and a bound.

    A study counts as REPORTED only when the PACS acknowledged all its objects. After
    ``max_attempts`` failures a delivery is FAILED (terminal, visible) and an ANALYSED study goes
    back to the conservative path, since no reader can see what triage concluded.
    """

    def __init__(
        self,
        database: Database,
        results_dir: Path,
        pacs: DicomPeer,
        calling_ae_title: str,
        max_attempts: int,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._tls = tls
        self._database = database
        self._results_dir = results_dir
        self._pacs = pacs
        self._calling = calling_ae_title
        self._max_attempts = max_attempts

    def deliver_due(self, now: datetime, limit: int = 50) -> int:
        """Try every due delivery once; return how many the PACS acknowledged."""
        with self._database.session() as session:
            due = [(d.id, d.storage_key) for d in store.due_deliveries(session, now, limit)]
        if not due:
            return 0
        results = send([self._results_dir / key for _, key in due], self._pacs, self._calling, self._tls)
        by_path = {str(r.path): r for r in results}
        delivered = 0
        with self._database.session() as session:
            for delivery_id, key in due:
                result = by_path.get(str(self._results_dir / key))
                ok = result is not None and result.ok
                error = "" if ok else (result.detail if result else "not sent")
                status = f" (status 0x{result.status:04X})" if result and result.status is not None else ""
                store.record_delivery(session, delivery_id, ok, f"{error}{status}", now, self._max_attempts)
                delivered += ok
        if delivered < len(due):
            logger.warning(
                "%d of %d result object(s) not yet accepted by %s", len(due) - delivered, len(due), self._pacs
            )
        return delivered
