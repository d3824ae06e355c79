"""Outcomes back from the hospital's systems: an HL7 v2 MLLP listener for final results (ORU^R01).

What triage reads, one outcome of each kind per message, from final or corrected observations only
(OBX-11 F or C; a preliminary result is not an outcome):

- **Fracture** (trauma studies): an ICD-10 code in OBX-5 (coding system I10, ICD10 or ICD-10) from
  the fracture codes of chapter XIX (S02, S12, S22, S32, S42, S52, S62, S72, S82, S92; T02, T08,
  T10, T12, T14.2) is a fracture; ICD-10 codes without one are no fracture. The emergency
  department's discharge diagnosis misses fractures found later.
- **Recall** (screens): an observation whose OBX-3 names BI-RADS, valued 0-6 (a letter may follow):
  0, 3, 4, 5 and 6 are a recall for assessment, 1 and 2 are not.
- **Cancer** (screens): a SNOMED CT code in OBX-5 (SCT, SNM or SNOMED): 363346000 (malignant
  neoplastic disease) or 254837009 (malignant neoplasm of breast) is a cancer, 3898006 (benign
  neoplasm) is not.
- Any of them as triage's own codes, for an integration engine that maps its own: OBX-3
  ``FRACTURE``, ``RECALL`` or ``CANCER`` in coding system 99TRIAGE, OBX-5 ``Y`` or ``N`` (HL70136).

The study is found by its Study Instance UID (ZDS-1 or IPC-3), else by its accession number (IPC-1,
else OBR-18 as IHE Radiology's Scheduled Workflow carries it), never by name; a patient identifier
(PID-3) that differs from the study's keeps the message unmatched. Every message is kept
(``triage.records.inbound``) and acknowledged: AA once kept (matched or not: nothing is lost), AR
for a message that is not an ORU^R01 or cannot be parsed, AE when triage could not keep it (its
database failed: send it again).
"""

from __future__ import annotations

import logging
import re
import socketserver
import threading
import uuid
from datetime import UTC, datetime

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message
from sqlalchemy.exc import SQLAlchemyError

from delivery.mllp import END, START
from delivery.oru import VERSION, escaped
from triage.records import inbound
from triage.records.db import Database
from triage.records.inbound import InboundOutcome, InboundState, Observation
from triage.records.tables import FeedbackKind
from triage.settings import Settings

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1 << 20
_ICD10 = {"I10", "ICD10", "ICD-10", "I10C"}
_SNOMED = {"SCT", "SNM", "SNOMED", "SNOMEDCT"}
_FRACTURE_ICD10 = re.compile(r"^(S[0-9]2|T0[28]|T1[02]|T14\.?2)", re.IGNORECASE)
_CANCER_SCT = {"363346000": True, "254837009": True, "3898006": False}
_OWN = {"FRACTURE": FeedbackKind.FRACTURE, "RECALL": FeedbackKind.RECALL, "CANCER": FeedbackKind.CANCER}


def _components(value: str) -> list[str]:
    return value.split("^")


def _segments(message: Message, name: str) -> list[object]:
    return [segment for segment in message.children if segment.name == name]


def _field(segment: object, number: int) -> str:
    name = f"{segment.name.lower()}_{number}"  # type: ignore[attr-defined]
    try:
        return str(getattr(segment, name).to_er7())
    except (HL7apyException, AttributeError, IndexError, ValueError):
        return ""


def _observation(obx: object) -> tuple[FeedbackKind, bool, str] | str:
    """One OBX as (kind, value, what said it), or why triage does not read it."""
    status = _field(obx, 11)
    if status not in ("F", "C"):
        return f"OBX-11 {status or 'empty'}: not a final result"
    code, value = _components(_field(obx, 3)), _components(_field(obx, 5))
    system = value[2].upper() if len(value) > 2 else ""
    if len(code) > 2 and code[2].upper() == "99TRIAGE" and code[0].upper() in _OWN:
        if value[0].upper() not in ("Y", "N"):
            return f"{code[0]} valued {value[0]!r}, not Y or N"
        return (
            _OWN[code[0].upper()],
            value[0].upper() == "Y",
            f"{code[0].upper()} {value[0].upper()} (99TRIAGE)",
        )
    if system in _ICD10:
        fracture = bool(_FRACTURE_ICD10.match(value[0]))
        return FeedbackKind.FRACTURE, fracture, f"ICD-10 {value[0]}"
    if "BIRADS" in "".join(code[:2]).upper().replace("-", ""):
        match = re.match(r"^\s*([0-6])", value[0])
        if match is None:
            return f"BI-RADS valued {value[0]!r}"
        category = int(match[1])
        return FeedbackKind.RECALL, category not in (1, 2), f"BI-RADS {value[0]}"
    if system in _SNOMED and value[0] in _CANCER_SCT:
        return FeedbackKind.CANCER, _CANCER_SCT[value[0]], f"SNOMED CT {value[0]}"
    return f"OBX {code[0] or '?'}: not an outcome triage reads"


def read(raw: str) -> InboundOutcome:
    """What triage reads of one message (never raises: a message it cannot read says why)."""
    try:
        message = parse_message(
            raw.replace("\n", "\r"), validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=False
        )
        msh = message.msh
        sender, control_id = msh.msh_3.to_er7(), msh.msh_10.to_er7()
        message_type = msh.msh_9.to_er7()
    except (HL7apyException, AttributeError, IndexError, ValueError, TypeError) as error:
        return InboundOutcome("", "", "", problem=f"not an HL7 v2 message ({type(error).__name__})")
    sender = _components(sender)[0]
    if _components(message_type)[:2] != ["ORU", "R01"]:
        return InboundOutcome(
            sender, control_id, message_type, problem=f"{message_type}: triage reads ORU^R01"
        )

    def first(name: str, number: int) -> str:
        """The first non-empty value of a field of a kind of segment, its first component."""
        return next((_components(v)[0] for s in _segments(message, name) if (v := _field(s, number))), "")

    observations: dict[FeedbackKind, Observation] = {}
    ignored = []
    for obx in _segments(message, "OBX"):
        found = _observation(obx)
        if isinstance(found, str):
            ignored.append(found)
            continue
        kind, value, said = found
        if kind is FeedbackKind.FRACTURE and kind in observations and observations[kind].value:
            continue  # one fracture code in the diagnoses is enough
        observations[kind] = Observation(kind, value, said)
    return InboundOutcome(
        sending_application=sender,
        control_id=control_id,
        message_type=message_type,
        accession_number=first("IPC", 1) or first("OBR", 18),
        study_instance_uid=first("ZDS", 1) or first("IPC", 3),
        patient_id=first("PID", 3),
        observations=tuple(observations.values()),
        ignored=tuple(ignored),
    )


def acknowledgement(code: str, control_id: str, text: str, receiving: str) -> str:
    """An ACK (HL7 2.5.1) of ``control_id``: MSA-1 ``code``, MSA-3 a short text."""
    ack = Message("ACK", version=VERSION, validation_level=VALIDATION_LEVEL.TOLERANT)
    ack.msh.msh_3 = "TRIAGE"
    ack.msh.msh_5 = escaped(receiving, 180)
    ack.msh.msh_7 = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    ack.msh.msh_9 = "ACK^R01^ACK"
    ack.msh.msh_10 = uuid.uuid4().hex[:20]
    ack.msh.msh_11 = "P"
    ack.msh.msh_12 = VERSION
    ack.msa.msa_1 = code
    ack.msa.msa_2 = escaped(control_id, 199)
    ack.msa.msa_3 = escaped(text, 80)
    return str(ack.to_er7())


class OutcomesListener:
    """Accepts MLLP connections on ``settings.hl7_outcomes_port``; every message is kept and answered."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self._settings = settings
        self._database = database
        listener = self

        class Handler(socketserver.StreamRequestHandler):
            timeout = settings.network_timeout_seconds

            def handle(self) -> None:
                listener.serve(self)

        assert settings.hl7_outcomes_port is not None
        self._server = socketserver.ThreadingTCPServer(
            (settings.hl7_outcomes_host, settings.hl7_outcomes_port), Handler, bind_and_activate=False
        )
        self._server.daemon_threads = True
        self._server.allow_reuse_address = True
        self._server.server_bind()
        self._server.server_activate()
        self._thread = threading.Thread(target=self._server.serve_forever, name="hl7-outcomes", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        logger.info("receiving outcomes over HL7 MLLP on %s:%d", self._settings.hl7_outcomes_host, self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve(self, handler: socketserver.StreamRequestHandler) -> None:
        """Read frames until the peer closes; answer each."""
        buffer = b""
        while True:
            try:
                chunk = handler.request.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            if len(buffer) > MAX_MESSAGE_BYTES:
                logger.warning(
                    "an HL7 peer sent more than %d bytes without ending a message", MAX_MESSAGE_BYTES
                )
                return
            while END in buffer:
                frame, buffer = buffer.split(END, 1)
                start = frame.find(START)
                handler.request.sendall(
                    START + self.answer(frame[start + 1 if start >= 0 else 0 :]).encode() + END
                )

    def answer(self, frame: bytes) -> str:
        """Keep one message and say how it went."""
        raw = frame.decode("utf-8", "replace")
        message = read(raw)
        try:
            with self._database.session() as session:
                receipt = inbound.receive(session, message, raw, self._settings, self._database.now())
        except SQLAlchemyError:
            logger.exception("an HL7 message could not be kept; answered AE")
            return acknowledgement(
                "AE", message.control_id, "not kept: send it again", message.sending_application
            )
        # No patient data in the log: the state and counts only.
        logger.info(
            "HL7 %s from %s: %s",
            message.message_type or "message",
            message.sending_application or "?",
            receipt.state,
        )
        code = "AR" if receipt.state is InboundState.REJECTED else "AA"
        return acknowledgement(code, message.control_id, receipt.detail, message.sending_application)


def start(settings: Settings, database: Database) -> list[OutcomesListener]:
    """Receive outcomes when a port is configured (none without)."""
    if settings.hl7_outcomes_port is None:
        return []
    listener = OutcomesListener(settings, database)
    listener.start()
    return [listener]
