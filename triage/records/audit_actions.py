"""What triage audits: one closed vocabulary, each action carrying the DICOM audit message it is
forwarded as off the host (PS3.15 A.5.3; event ids and types from PS3.16's DCM scheme)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

SUCCESS, MINOR_FAILURE = "0", "4"  # EventOutcomeIndicator


@dataclass(frozen=True)
class DicomAuditEvent:
    """EventID (code, meaning), EventActionCode, EventTypeCode (code, meaning) or None, and outcome."""

    event_id: tuple[str, str]
    action_code: str
    type_code: tuple[str, str] | None = None
    outcome: str = SUCCESS


INSTANCES_ACCESSED = ("110103", "DICOM Instances Accessed")
TRANSFERRED = ("110104", "DICOM Instances Transferred")
STUDY_DELETED = ("110105", "DICOM Study Deleted")
AUTHENTICATION = ("110114", "User Authentication")
SECURITY_ALERT = ("110113", "Security Alert")
PATIENT_RECORD = ("110110", "Patient Record")
LOGIN = ("110122", "Login")
NODE_AUTHENTICATION = ("110126", "Node Authentication")
SOFTWARE_CONFIGURATION = ("110131", "Software Configuration")
USER_ATTRIBUTES = ("110137", "User Security Attributes Changed")
APPLICATION_ACTIVITY = DicomAuditEvent(("110100", "Application Activity"), "E")


class AuditAction(enum.StrEnum):
    """Every action the audit log records; ``dicom_event`` is how it leaves the host."""

    STUDY_RECEIVED = "study.received"
    STUDY_INSTANCE_REFUSED = "study.instance_refused"
    STUDY_ORIGINALS_REMOVED = "study.originals_removed"
    STUDY_ORIGINAL_RESTORED = "study.original_restored"
    STUDY_PATIENT_MISMATCH = "study.patient_mismatch"
    STUDY_VIEWED = "study.viewed"
    IMAGE_VIEWED = "image.viewed"
    VIEWER_LAUNCHED = "viewer.launched"
    WORKLIST_VIEWED = "worklist.viewed"
    FEEDBACK_RECORDED = "feedback.recorded"
    OUTCOME_RECEIVED = "outcome.received"  # a hospital system's result, over HL7, read as an outcome
    DISCREPANCY_FOUND = "discrepancy.found"  # an outcome shows a patient an AI decision touched wrongly
    DISCREPANCY_NOTIFIED = "discrepancy.notified"
    DISCREPANCY_CLOSED = "discrepancy.closed"  # a radiologist recorded the contact and what was done
    RESULT_WITHDRAWN = "result.withdrawn"
    CONFLICT_RESOLVED = "conflict.resolved"
    CONFLICT_CLEARED = "conflict.cleared"
    DELIVERY_ACKNOWLEDGED = "delivery.acknowledged"
    DELIVERY_FAILED = "delivery.failed"
    DELIVERY_COMMITTED = "delivery.committed"  # the PACS took responsibility (storage commitment)
    DELIVERY_RESENT = "delivery.resent"  # an operator queued a failed object or message again
    LABELS_EXPORTED = "labels.exported"
    AUDIT_VIEWED = "audit.viewed"
    AUDIT_SUPPRESSED = "audit.suppressed"
    SESSION_STARTED = "session.started"
    SESSION_REFUSED = "session.refused"
    TOKEN_REFUSED = "token.refused"  # noqa: S105 - an action's name, not a secret
    ACCESS_FORBIDDEN = "access.forbidden"
    ASSOCIATION_REFUSED = "association.refused"
    ASSOCIATION_REJECTED = "association.rejected"
    TLS_FAILED = "tls.failed"
    USER_CREATED = "user.created"
    USER_DEACTIVATED = "user.deactivated"
    USER_ROLE_GRANTED = "user.role_granted"
    USER_PASSWORD_CHANGED = "user.password_changed"  # noqa: S105 - an action's name, not a secret
    MODEL_PROMOTED = "model.promoted"
    MODEL_SHADOW = "model.shadow"
    MODEL_ROLLED_BACK = "model.rolled_back"
    MODEL_IMPORTED = "model.imported"
    DECISION_OVERRIDDEN = "model.decision_overridden"
    DECISION_OVERRIDE_REVOKED = "model.decision_override_revoked"
    DECISION_SWITCHED_OFF = "model.decision_switched_off"
    DECISION_RESUMED = "model.decision_resumed"
    DECISION_CHANGE_PROPOSED = "model.decision_change_proposed"  # with its what-if; a second admin approves
    DECISION_CHANGE_APPROVED = "model.decision_change_approved"
    DECISION_NOT_ENABLED = "result.decision_not_enabled"

    @property
    def dicom_event(self) -> DicomAuditEvent:
        return _EVENTS[self]


A = AuditAction
_EVENTS: dict[AuditAction, DicomAuditEvent] = {
    A.STUDY_RECEIVED: DicomAuditEvent(TRANSFERRED, "C"),
    A.STUDY_INSTANCE_REFUSED: DicomAuditEvent(TRANSFERRED, "C", outcome=MINOR_FAILURE),
    A.STUDY_ORIGINALS_REMOVED: DicomAuditEvent(STUDY_DELETED, "D"),
    A.STUDY_ORIGINAL_RESTORED: DicomAuditEvent(TRANSFERRED, "C"),
    A.STUDY_PATIENT_MISMATCH: DicomAuditEvent(PATIENT_RECORD, "U", outcome=MINOR_FAILURE),
    A.STUDY_VIEWED: DicomAuditEvent(INSTANCES_ACCESSED, "R"),
    A.IMAGE_VIEWED: DicomAuditEvent(INSTANCES_ACCESSED, "R"),
    A.VIEWER_LAUNCHED: DicomAuditEvent(INSTANCES_ACCESSED, "R"),
    A.WORKLIST_VIEWED: DicomAuditEvent(INSTANCES_ACCESSED, "R"),
    A.FEEDBACK_RECORDED: DicomAuditEvent(INSTANCES_ACCESSED, "U"),
    A.OUTCOME_RECEIVED: DicomAuditEvent(INSTANCES_ACCESSED, "U"),
    A.DISCREPANCY_FOUND: DicomAuditEvent(INSTANCES_ACCESSED, "U"),
    A.DISCREPANCY_NOTIFIED: DicomAuditEvent(INSTANCES_ACCESSED, "R"),
    A.DISCREPANCY_CLOSED: DicomAuditEvent(INSTANCES_ACCESSED, "U"),
    A.RESULT_WITHDRAWN: DicomAuditEvent(INSTANCES_ACCESSED, "U"),
    A.CONFLICT_RESOLVED: DicomAuditEvent(PATIENT_RECORD, "U"),
    A.CONFLICT_CLEARED: DicomAuditEvent(PATIENT_RECORD, "U"),
    A.DELIVERY_ACKNOWLEDGED: DicomAuditEvent(TRANSFERRED, "R"),
    A.DELIVERY_FAILED: DicomAuditEvent(TRANSFERRED, "R", outcome=MINOR_FAILURE),
    A.DELIVERY_COMMITTED: DicomAuditEvent(TRANSFERRED, "R"),
    A.DELIVERY_RESENT: DicomAuditEvent(TRANSFERRED, "R"),
    A.LABELS_EXPORTED: DicomAuditEvent(("110106", "Export"), "R"),
    A.AUDIT_VIEWED: DicomAuditEvent(("110101", "Audit Log Used"), "R"),
    A.AUDIT_SUPPRESSED: DicomAuditEvent(
        SECURITY_ALERT, "E", ("110133", "Audit Recording Stopped"), MINOR_FAILURE
    ),
    A.SESSION_STARTED: DicomAuditEvent(AUTHENTICATION, "E", LOGIN),
    A.SESSION_REFUSED: DicomAuditEvent(AUTHENTICATION, "E", LOGIN, MINOR_FAILURE),
    A.TOKEN_REFUSED: DicomAuditEvent(AUTHENTICATION, "E", LOGIN, MINOR_FAILURE),
    A.ACCESS_FORBIDDEN: DicomAuditEvent(
        SECURITY_ALERT, "E", ("110132", "Use of Restricted Function"), MINOR_FAILURE
    ),
    A.ASSOCIATION_REFUSED: DicomAuditEvent(SECURITY_ALERT, "E", NODE_AUTHENTICATION, MINOR_FAILURE),
    A.ASSOCIATION_REJECTED: DicomAuditEvent(SECURITY_ALERT, "E", NODE_AUTHENTICATION, MINOR_FAILURE),
    A.TLS_FAILED: DicomAuditEvent(SECURITY_ALERT, "E", NODE_AUTHENTICATION, MINOR_FAILURE),
    A.USER_CREATED: DicomAuditEvent(SECURITY_ALERT, "E", USER_ATTRIBUTES),
    A.USER_DEACTIVATED: DicomAuditEvent(SECURITY_ALERT, "E", USER_ATTRIBUTES),
    A.USER_ROLE_GRANTED: DicomAuditEvent(SECURITY_ALERT, "E", ("110136", "Security Roles Changed")),
    A.USER_PASSWORD_CHANGED: DicomAuditEvent(SECURITY_ALERT, "E", USER_ATTRIBUTES),
    # A model put in force, in shadow or taken back changes what the software does to patients.
    A.MODEL_PROMOTED: DicomAuditEvent(SECURITY_ALERT, "E", SOFTWARE_CONFIGURATION),
    A.MODEL_SHADOW: DicomAuditEvent(SECURITY_ALERT, "E", SOFTWARE_CONFIGURATION),
    A.MODEL_ROLLED_BACK: DicomAuditEvent(SECURITY_ALERT, "E", SOFTWARE_CONFIGURATION),
    A.MODEL_IMPORTED: DicomAuditEvent(SECURITY_ALERT, "E", SOFTWARE_CONFIGURATION),
    A.DECISION_OVERRIDDEN: DicomAuditEvent(SECURITY_ALERT, "E", SOFTWARE_CONFIGURATION),
    A.DECISION_OVERRIDE_REVOKED: DicomAuditEvent(SECURITY_ALERT, "E", SOFTWARE_CONFIGURATION),
    A.DECISION_SWITCHED_OFF: DicomAuditEvent(SECURITY_ALERT, "E", SOFTWARE_CONFIGURATION),
    A.DECISION_RESUMED: DicomAuditEvent(SECURITY_ALERT, "E", SOFTWARE_CONFIGURATION),
    A.DECISION_CHANGE_PROPOSED: DicomAuditEvent(SECURITY_ALERT, "E", SOFTWARE_CONFIGURATION),
    A.DECISION_CHANGE_APPROVED: DicomAuditEvent(SECURITY_ALERT, "E", SOFTWARE_CONFIGURATION),
    # A result made with a decision off (the conservative path) is a fact about that patient's study.
    A.DECISION_NOT_ENABLED: DicomAuditEvent(INSTANCES_ACCESSED, "U"),
}


def dicom_event(action: str) -> DicomAuditEvent:
    """The DICOM audit message of a stored action (an older release's unknown one: Application Activity)."""
    try:
        return AuditAction(action).dicom_event
    except ValueError:
        return APPLICATION_ACTIVITY
