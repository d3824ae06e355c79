"""C-ECHO and C-STORE as a client: the operator's ``triage send`` and ``triage echo``."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pynetdicom import AE, _config

from dicom_node.scp import VERIFICATION
from triage.settings import DicomPeer

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


def echo(peer: DicomPeer, calling_ae_title: str, timeout_seconds: float = 10.0) -> int | None:
    """Send C-ECHO; return the status, or None when no association could be made."""
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_seconds
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        return None
    try:
        response = assoc.send_c_echo()
        return int(response.Status) if "Status" in response else None
    finally:
        assoc.release()


def send(paths: Iterable[Path], peer: DicomPeer, calling_ae_title: str) -> list[SendResult]:
    """C-STORE every DICOM file under ``paths`` to ``peer``, streaming each from disk."""
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
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
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
