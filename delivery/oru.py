"""The AI result as an HL7 v2.5.1 ORU^R01 for the RIS or the emergency department's record.

Built with hl7apy against the 2.5.1 message structure (strict validation: a message that breaks it
is never queued). What it says is what the SR says, in the same 99TRIAGE codes (``triage.codes``):
the verdict that acted when the version entered the state being reported (the stored acting verdict,
``triage.records.verdicts``), the score, the route and HIGH RISK for a screen, each decision the
evidence gate left off and why, the model by name and version (DICOM's Algorithm Name and Version
codes), the Study Instance UID and the SR's SOP Instance UID. Every result is preliminary (OBR-25 and
OBX-11 ``P``; a later message about the same study is a correction, ``C``) and says in a note that no
radiologist has verified it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Group, Message
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from triage.codes import (
    DECISION_NOT_ENABLED,
    DECISION_OVERRIDDEN,
    EXAM_PROBABILITY,
    EXAM_SCORE,
    HIGH_RISK,
    NOT_VERIFIED,
    READING_ROUTE,
    REASON,
    ROUTE_CODES,
    SR_INSTANCE,
    STATE_CODES,
    STUDY_SCORE,
    TRIAGE_STATE,
)
from triage.outcomes import BreastOutcome, FractureOutcome, Verdict
from triage.pipelines import Pipeline

VERSION = "2.5.1"
PRELIMINARY, CORRECTION = "P", "C"
# HL7 2.5.1 2.7.4: the delimiters inside a value are sent as escape sequences (the escape first).
_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))
_YES_NO = {True: "Y^Yes^HL70136", False: "N^No^HL70136"}


# hl7apy's 2.5.1 structures allow 199 characters in an observation value, whatever its type.
MAX_TEXT = 199


def escaped(text: str, limit: int | None = None) -> str:
    """``text`` as one HL7 value: delimiters escaped, line breaks as spaces; cut at ``limit``
    characters (an escape sequence never split), ending in "..." where cut."""
    escapes = dict(_ESCAPES)
    parts = [escapes.get(c, c) for c in " ".join(text.split())]
    if limit is None or sum(map(len, parts)) <= limit:
        return "".join(parts)
    kept, length = [], 3
    for part in parts:
        if length + len(part) > limit:
            break
        kept.append(part)
        length += len(part)
    return "".join(kept) + "..."


def coded(code: Code) -> str:
    """A CWE: identifier, text, coding system."""
    return f"{escaped(code.value)}^{escaped(code.meaning)}^{escaped(code.scheme_designator)}"


@dataclass(frozen=True)
class Patient:
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str  # DICOM PN: family^given^middle^prefix^suffix, as HL7's XPN orders them
    patient_birth_date: str


@dataclass(frozen=True)
class Reported:
    """What one message reports: a version of a study as it stood when it entered ``state``."""

    study_instance_uid: str
    accession_number: str
    study_date: str
    pipeline: Pipeline | None
    verdict: Verdict  # the acting verdict at that state
    outcome: FractureOutcome | BreastOutcome | None  # the outcome behind it, when it acts
    reason: str  # why not analysed, or why withdrawn
    model_name: str = ""
    model_version: str = ""
    sr_instance_uid: str = ""


@dataclass(frozen=True)
class Header:
    control_id: str  # MSH-10
    sending_facility: str
    receiving_application: str
    result_status: str  # PRELIMINARY or CORRECTION
    at: datetime


def _person_name(name: str) -> str:
    first_group = name.split("=")[0]  # DICOM's alphabetic group; the ideographic ones are left out
    return "^".join(escaped(part) for part in first_group.split("^")[:5])


def _observations(reported: Reported) -> list[tuple[str, str, str]]:
    """(value type, OBX-3, OBX-5) of every observation, in order."""
    rows: list[tuple[str, str, str]] = []
    outcome = reported.outcome
    if reported.pipeline == Pipeline.BREAST and reported.verdict in ROUTE_CODES:
        rows.append(("CWE", coded(READING_ROUTE), coded(ROUTE_CODES[reported.verdict])))
    else:
        state = STATE_CODES.get(reported.verdict, STATE_CODES[Verdict.NOT_ANALYSED])
        rows.append(("CWE", coded(TRIAGE_STATE), coded(state)))
    if isinstance(outcome, FractureOutcome) and outcome.probability is not None:
        rows.append(("NM", coded(STUDY_SCORE), f"{outcome.probability:.4f}"))
    if isinstance(outcome, BreastOutcome):
        if outcome.score is not None:
            rows.append(("NM", coded(EXAM_SCORE), str(outcome.score)))
        if outcome.probability is not None:
            rows.append(("NM", coded(EXAM_PROBABILITY), f"{outcome.probability:.4f}"))
        rows.append(("CWE", coded(HIGH_RISK), _YES_NO[outcome.high_risk]))
    if outcome is not None:
        for decision, why in sorted(outcome.not_enabled.items()):
            rows.append(("ST", coded(DECISION_NOT_ENABLED), escaped(f"{decision.label}: {why}", MAX_TEXT)))
        for decision, why in sorted(outcome.overridden.items()):
            rows.append(("ST", coded(DECISION_OVERRIDDEN), escaped(f"{decision.label}: {why}", MAX_TEXT)))
    if reported.reason and (outcome is None or reported.verdict == Verdict.NOT_ANALYSED):
        rows.append(("ST", coded(REASON), escaped(reported.reason, MAX_TEXT)))
    if reported.model_name:
        rows.append(("ST", coded(codes.DCM.AlgorithmName), escaped(reported.model_name, MAX_TEXT)))
        rows.append(("ST", coded(codes.DCM.AlgorithmVersion), escaped(reported.model_version, MAX_TEXT)))
    rows.append(("ST", coded(codes.DCM.StudyInstanceUID), reported.study_instance_uid))
    if reported.sr_instance_uid:
        rows.append(("ST", coded(SR_INSTANCE), reported.sr_instance_uid))
    return rows


def oru_message(header: Header, patient: Patient, reported: Reported) -> str:
    """The message in ER7 (segments ended by carriage returns), validated against 2.5.1.

    Raises:
        HL7apyException: a value HL7 cannot carry as it is (an identifier longer than its field):
            the message is not built rather than sent with an identifier cut short.
    """
    message = Message("ORU_R01", version=VERSION, validation_level=VALIDATION_LEVEL.STRICT)
    message.msh.msh_3 = "TRIAGE"
    message.msh.msh_4 = escaped(header.sending_facility)
    message.msh.msh_5 = escaped(header.receiving_application)
    message.msh.msh_7 = header.at.strftime("%Y%m%d%H%M%S+0000")
    message.msh.msh_9 = "ORU^R01^ORU_R01"
    message.msh.msh_10 = header.control_id
    message.msh.msh_11 = "P"  # production
    message.msh.msh_12 = VERSION
    result = message.add_group("ORU_R01_PATIENT_RESULT")
    identified = result.add_group("ORU_R01_PATIENT")
    issuer = escaped(patient.issuer_of_patient_id)
    identified.pid.pid_3 = f"{escaped(patient.patient_id)}^^^{issuer}^MR"
    identified.pid.pid_5 = _person_name(patient.patient_name)
    if patient.patient_birth_date:
        identified.pid.pid_7 = patient.patient_birth_date
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    _order(order, header, reported)
    for number, (value_type, name, value) in enumerate(_observations(reported), start=1):
        observation = order.add_group("ORU_R01_OBSERVATION").obx
        observation.obx_1 = str(number)
        observation.obx_2 = value_type
        observation.obx_3 = name
        observation.obx_5 = value
        observation.obx_11 = header.result_status
    if not message.validate():  # raises with the broken rule; False only on a silent failure
        raise ValueError("the ORU^R01 does not validate against HL7 2.5.1")
    return str(message.to_er7()) + "\r"


def _order(order: Group, header: Header, reported: Reported) -> None:
    accession = escaped(reported.accession_number)
    pipeline = reported.pipeline.value if reported.pipeline else "study"
    order.orc.orc_1 = "RE"  # observations to follow
    order.orc.orc_3 = accession  # the accession number: the RIS's filler order number
    order.obr.obr_1 = "1"
    order.obr.obr_3 = accession
    order.obr.obr_4 = f"TRIAGE-{pipeline.upper()}^AI triage ({pipeline})^99TRIAGE"
    if reported.study_date:
        order.obr.obr_7 = reported.study_date
    order.obr.obr_22 = header.at.strftime("%Y%m%d%H%M%S+0000")
    order.obr.obr_24 = "RAD"
    order.obr.obr_25 = header.result_status
    order.add_segment("NTE").nte_3 = NOT_VERIFIED
