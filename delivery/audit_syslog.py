"""The audit log forwarded off the host: each event as a DICOM audit message (PS3.15 A.5) in an
RFC 5424 syslog message, over TCP (RFC 6587 octet counting) or TLS (RFC 5425), to an audit record
repository (IHE ATNA).

The database is the spool: a cursor (``audit_cursors``, name ``syslog``) records the last event
the collector took, and only moves once a batch went out whole; while the collector is down the
events wait, and a restart goes on from the cursor. Delivery is at least once: a batch cut off
mid-way is sent again, and the RFC 5424 ``meta sequenceId`` (the event's id) lets the collector
drop what it already has. Only the leading listener forwards.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from xml.etree import ElementTree as ET

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage import __version__
from triage.periodic import PeriodicThread
from triage.records.audit_actions import dicom_event
from triage.records.audit_chain import settled_horizon
from triage.records.db import Database
from triage.records.tables import AuditCursor, AuditEvent, Study
from triage.settings import Settings
from triage.values import syslog_address

logger = logging.getLogger(__name__)
CURSOR = "syslog"
BATCH = 200
PRI = 10 * 8 + 5  # facility authpriv (10), severity notice (5), as ATNA asks


def _code(parent: ET.Element, tag: str, code: tuple[str, str], system: str = "DCM") -> None:
    ET.SubElement(parent, tag, {"csd-code": code[0], "codeSystemName": system, "originalText": code[1]})


def audit_message(event: AuditEvent, study: Study | None, source_id: str, site_id: str) -> bytes:
    """One event as a DICOM audit message: what happened, who did it from where, which patient and
    study it touched (the Patient ID and Study Instance UID: what an audit repository needs to
    answer "who saw this patient's data"; never the name). triage's action and detail go in the
    EventOutcomeDescription, so nothing the database holds is lost on the way."""
    found = dicom_event(event.action)
    root = ET.Element("AuditMessage")
    identification = ET.SubElement(
        root,
        "EventIdentification",
        {
            "EventActionCode": found.action_code,
            "EventDateTime": event.at.isoformat(),
            "EventOutcomeIndicator": found.outcome,
        },
    )
    _code(identification, "EventID", found.event_id)
    if found.type_code is not None:
        _code(identification, "EventTypeCode", found.type_code)
    ET.SubElement(identification, "EventOutcomeDescription").text = f"{event.action}: {event.detail}"[:1024]
    actor = ET.SubElement(
        root,
        "ActiveParticipant",
        {"UserID": event.actor, "UserIsRequestor": "true", **_access_point(event.source)},
    )
    _code(actor, "RoleIDCode", ("110153", "Source Role ID"))
    source = ET.SubElement(
        root, "AuditSourceIdentification", {"AuditSourceID": source_id, "AuditEnterpriseSiteID": site_id}
    )
    _code(source, "AuditSourceTypeCode", ("4", "Application Server Process"), "DCM")
    if study is not None:
        patient = ET.SubElement(
            root,
            "ParticipantObjectIdentification",
            {
                "ParticipantObjectID": study.patient_id,
                "ParticipantObjectTypeCode": "1",
                "ParticipantObjectTypeCodeRole": "1",
            },
        )
        _code(patient, "ParticipantObjectIDTypeCode", ("2", "Patient Number"), "RFC-3881")
        studied = ET.SubElement(
            root,
            "ParticipantObjectIdentification",
            {
                "ParticipantObjectID": study.study_instance_uid,
                "ParticipantObjectTypeCode": "2",
                "ParticipantObjectTypeCodeRole": "3",
            },
        )
        _code(studied, "ParticipantObjectIDTypeCode", ("110180", "Study Instance UID"))
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


def _access_point(source: str) -> dict[str, str]:
    """NetworkAccessPointID and its type (2: an IP address, 1: a machine name), when known."""
    if not source or source in ("triage", "cli"):
        return {}
    kind = "2" if source.replace(".", "").isdigit() or ":" in source else "1"
    return {"NetworkAccessPointID": source, "NetworkAccessPointTypeCode": kind}


def syslog_frame(event: AuditEvent, message: bytes, hostname: str) -> bytes:
    """The RFC 5424 message around ``message``, framed by its length (RFC 6587 3.4.1, RFC 5425 4.3)."""
    header = (
        f"<{PRI}>1 {event.at.isoformat()} {hostname[:255] or '-'} triage - DICOM+RFC3881 "
        f'[meta sequenceId="{event.id % 2147483647 or 1}"] '
    ).encode("ascii", "replace")
    body = header + b"\xef\xbb\xbf" + message  # BOM: the MSG is UTF-8
    return str(len(body)).encode("ascii") + b" " + body


class AuditForwarder:
    """Sends the audit events after the cursor to the collector, a batch per pass."""

    def __init__(self, settings: Settings, database: Database, hostname: str | None = None) -> None:
        assert settings.audit_syslog_url is not None
        self._database = database
        self._scheme, self._host, self._port = syslog_address(settings.audit_syslog_url)
        self._tls = self._tls_context(settings) if self._scheme == "tls" else None
        self._timeout = settings.network_timeout_seconds
        self._hostname = hostname or socket.getfqdn()
        self._source_id = f"{settings.ae_title}@{self._hostname}"
        self._site_id = settings.audit_site_id

    @staticmethod
    def _tls_context(settings: Settings) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.audit_syslog_ca)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if settings.tls_certificate is not None and settings.tls_private_key is not None:
            context.load_cert_chain(settings.tls_certificate, settings.tls_private_key)
        return context

    def pending(self, session: Session, horizon: int) -> tuple[int, list[tuple[AuditEvent, Study | None]]]:
        """The cursor and the next batch of events after it up to ``horizon``, each with its study."""
        cursor = session.get(AuditCursor, CURSOR)
        after = cursor.last_event_id if cursor else 0
        rows = session.execute(
            select(AuditEvent, Study)
            .outerjoin(Study, Study.id == AuditEvent.study_id)
            .where(AuditEvent.id > after, AuditEvent.id <= horizon)
            .order_by(AuditEvent.id)
            .limit(BATCH)
        ).all()
        return after, [(event, study) for event, study in rows]

    def forward(self) -> int:
        """Send what waits, a batch at a time, until nothing does or the collector fails; the
        cursor moves after each batch that went whole. Returns how many events were sent."""
        sent = 0
        while True:
            batch = self.forward_batch()
            sent += batch
            if batch < BATCH:
                return sent

    def forward_batch(self) -> int:
        """Send the next batch; move the cursor only if all of it went. Returns how many.

        Only events up to the settled horizon go: the cursor moves over ids, and on PostgreSQL an
        event whose transaction commits late can carry a lower id than one already visible; read
        past the horizon, it would be skipped for good."""
        with self._database.reading() as session:  # its own transaction: the lock ends with it
            horizon = settled_horizon(session)
        if horizon is None:
            return 0
        with self._database.reading() as session:
            _, batch = self.pending(session, horizon)
            frames = [
                syslog_frame(
                    event, audit_message(event, study, self._source_id, self._site_id), self._hostname
                )
                for event, study in batch
            ]
            last = batch[-1][0].id if batch else None
        if last is None:
            return 0
        try:
            self._send(frames)
        except OSError as error:
            logger.warning("the audit collector %s:%d took nothing: %s", self._host, self._port, error)
            self._record(None, f"not reachable: {type(error).__name__}")
            return 0
        self._record(last, "")
        return len(frames)

    def _send(self, frames: Sequence[bytes]) -> None:
        with socket.create_connection((self._host, self._port), timeout=self._timeout) as raw:
            if self._tls is None:
                raw.sendall(b"".join(frames))
                return
            with self._tls.wrap_socket(raw, server_hostname=self._host) as secured:
                secured.sendall(b"".join(frames))

    def _record(self, last: int | None, detail: str) -> None:
        with self._database.session() as session:
            cursor = session.get(AuditCursor, CURSOR)
            if cursor is None:
                cursor = AuditCursor(name=CURSOR, last_event_id=0)
                session.add(cursor)
            if last is not None:
                cursor.last_event_id = max(cursor.last_event_id, last)
            cursor.updated_at, cursor.detail = self._database.now(), detail


def start(settings: Settings, database: Database, leading: Callable[[], bool]) -> list[PeriodicThread]:
    """Forward the audit log in a background thread while ``leading()`` (none without a collector)."""
    if settings.audit_syslog_url is None:
        return []
    forwarder = AuditForwarder(settings, database)
    thread = PeriodicThread("audit-syslog", lambda: forwarder.forward() if leading() else 0, 2.0)
    thread.start()
    logger.info("forwarding the audit log to %s (triage %s)", settings.audit_syslog_url, __version__)
    return [thread]
