"""The settings of what leaves triage: the PACS that receives the results, the RIS that receives
HL7, the audit collector, the viewer the page links to. ``Settings`` inherits them; only the entry
point builds settings (``triage.settings.load_settings``).
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode

from triage.pipelines import Pipeline
from triage.values import DicomPeer, Hl7Peer, syslog_address


class OutboundSettings(BaseSettings):
    """Where results, HL7 messages and audit events go, and how hard triage tries."""

    pacs: Annotated[DicomPeer | None, NoDecode] = None
    delivery_max_attempts: int = Field(default=10, ge=1)
    # However the tries go, a result object not acknowledged this long after it was queued fails for
    # good (the study goes back to the conservative path, visibly).
    delivery_deadline_seconds: float = Field(default=1200.0, gt=0)
    # Storage commitment (PS3.4 Annex J, push model) at the PACS: a study is REPORTED only once the
    # PACS commits every result object, not on the C-STORE status alone. The PACS answers on an
    # association of its own, so it must know triage's AE (ae_title at dicom_host:dicom_port) and be
    # an allowed calling AE. No report within the timeout: asked again, up to max_requests requests
    # per study (objects reported as failed are sent again first); then the study goes conservative.
    pacs_storage_commitment: bool = False
    storage_commitment_timeout_seconds: float = Field(default=300.0, gt=0)
    storage_commitment_max_requests: int = Field(default=3, ge=1)
    # Each screen's result also as a Mammography CAD SR (TID 4000), the object mammography
    # workstations draw CAD marks from; sent to the PACS before the TID 1500 SR. Off for a PACS that
    # refuses its SOP class (the screen's delivery would fail, and the screen go to double reading).
    mammography_cad_sr: bool = True
    # HL7 v2.5.1 ORU^R01 over MLLP to the RIS or the emergency department's record, written
    # APPLICATION@host:port: the AI result as preliminary when a study is REPORTED or NOT ANALYSED,
    # and a correction when a later version or a withdrawal changes it. Retried like the PACS
    # deliveries (delivery_max_attempts, delivery_deadline_seconds), then FAILED and visible; it never
    # gates the verdict (it is sent after the PACS acknowledged, or after the study went conservative).
    hl7_ris: Annotated[Hl7Peer | None, NoDecode] = None
    # Only these pipelines' results go to it (env: fracture,breast); empty: every study's. A screening
    # RIS takes the breast results; trauma results go where discharge is decided, often through the
    # hospital's integration engine as one peer for both.
    hl7_ris_pipelines: Annotated[tuple[Pipeline, ...], NoDecode] = ()
    hl7_sending_facility: str = Field(default="", max_length=20)  # MSH-4; MSH-6 is left to the peer
    # Outcomes back over HL7 (ORU^R01 on MLLP, delivery/outcomes_in.py): the final results of the
    # screening RIS, pathology and the emergency department's discharge diagnoses, read as outcomes
    # for the live evidence. Unset port: not listened for.
    hl7_outcomes_host: str = "127.0.0.1"
    hl7_outcomes_port: int | None = Field(default=None, ge=0, le=65535)
    # The Recall queue's notifications (delivery/notify.py): a webhook (JSON POST) and/or e-mail
    # through the site's SMTP server (host:port, no authentication: a relay inside the hospital).
    # Neither: the page alone shows the queue.
    notify_webhook_url: str | None = None
    notify_smtp: str | None = Field(default=None, pattern=r"^[^:\s]+:[0-9]{1,5}$")
    notify_email_from: str = "triage@localhost"
    notify_email_to: Annotated[tuple[str, ...], NoDecode] = ()
    # DICOM TLS to the PACS: the CA that signed its certificate; our certificate (tls_certificate,
    # tls_private_key) is presented when set, for PACS that require client certificates.
    pacs_tls_ca: Path | None = None
    # DICOM audit messages (PS3.15 A.5) to a syslog collector (an ATNA audit record repository):
    # tcp://host:port (RFC 6587 octet counting) or tls://host:port (RFC 5425, verified against
    # audit_syslog_ca or the system's CAs; tls_certificate presented when set). Unset: the audit log
    # stays in the database only. Events wait in the database while the collector is down.
    audit_syslog_url: str | None = None
    # "Open in PACS viewer" (IHE Invoke Image Display style): the site's viewer URL with
    # {study_instance_uid}; {accession_number} and {patient_id} only with pacs_viewer_identifiers, since
    # URLs end up in proxy and browser logs. Unset: no button. Each launch is audited.
    pacs_viewer_url: str | None = None
    pacs_viewer_identifiers: bool = False
    audit_syslog_ca: Path | None = None
    audit_site_id: str = Field(default="", max_length=64)  # AuditEnterpriseSiteID: the hospital

    @field_validator("audit_syslog_url")
    @classmethod
    def _syslog_url(cls, value: str | None) -> str | None:
        if value is not None:
            syslog_address(value)
        return value

    @model_validator(mode="after")
    def _viewer_url(self) -> Self:
        if self.pacs_viewer_url is None:
            return self
        found = {name for _, name, _, _ in string.Formatter().parse(self.pacs_viewer_url) if name}
        allowed = {"study_instance_uid"} | (
            {"accession_number", "patient_id"} if self.pacs_viewer_identifiers else set()
        )
        if "study_instance_uid" not in found or found - allowed:
            raise ValueError(
                f"pacs_viewer_url takes {{study_instance_uid}} and only {sorted(allowed)} "
                f"(accession_number and patient_id need pacs_viewer_identifiers); it has {sorted(found)}"
            )
        return self

    @field_validator("notify_email_to", mode="before")
    @classmethod
    def _split_addresses(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("hl7_ris_pipelines", mode="before")
    @classmethod
    def _split_pipelines(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("hl7_ris", mode="before")
    @classmethod
    def _parse_hl7_ris(cls, value: object) -> object:
        if isinstance(value, str):
            return Hl7Peer.parse(value) if value.strip() else None
        return value

    @field_validator("pacs", mode="before")
    @classmethod
    def _parse_pacs(cls, value: object) -> object:
        if isinstance(value, str):
            return DicomPeer.parse(value) if value.strip() else None
        return value
