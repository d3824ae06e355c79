"""HL7 v2 over MLLP (HL7's Minimal Lower Layer Protocol, v2 Appendix C): one message out, its
acknowledgement back, on a connection of its own.

A message goes framed as VT, the message, FS CR; the answer is read up to its own FS CR, within a
timeout and a size bound. The acknowledgement is parsed with hl7apy: MSA-1 says how it went (AA
accepted; AE error; AR rejected; the enhanced mode's CA, CE, CR likewise) and MSA-2 must name the
message sent, or the answer is not about it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message

from triage.values import Hl7Peer

START, END = b"\x0b", b"\x1c\x0d"
_MAX_ANSWER_BYTES = 1 << 20
ACCEPTED = frozenset({"AA", "CA"})


@dataclass(frozen=True)
class Answer:
    """What came back: the MSA-1 code ("" when nothing usable did) and why it is not AA."""

    code: str
    detail: str = ""

    @property
    def accepted(self) -> bool:
        return self.code in ACCEPTED


def framed(message: str) -> bytes:
    return START + message.encode("utf-8") + END


def send(peer: Hl7Peer, message: str, control_id: str, timeout_seconds: float) -> Answer:
    """Send one message and read its acknowledgement; never raises for the network or the peer."""
    try:
        with socket.create_connection((peer.host, peer.port), timeout=timeout_seconds) as connection:
            connection.settimeout(timeout_seconds)
            connection.sendall(framed(message))
            raw = _read_frame(connection)
    except TimeoutError:
        return Answer("", f"no acknowledgement within {timeout_seconds:g} s")
    except OSError as error:
        return Answer("", f"not reachable: {type(error).__name__}")
    if raw is None:
        return Answer("", "the connection closed before an acknowledgement")
    return acknowledgement(raw, control_id)


def _read_frame(connection: socket.socket) -> bytes | None:
    received = b""
    while END not in received:
        chunk = connection.recv(65536)
        if not chunk:
            return None
        received += chunk
        if len(received) > _MAX_ANSWER_BYTES:
            raise TimeoutError  # a peer that never ends its frame is treated as one that never answers
    start = received.find(START)
    return received[start + 1 if start >= 0 else 0 : received.index(END)]


def acknowledgement(raw: bytes, control_id: str) -> Answer:
    """Read an ACK: its MSA-1 code, and why it does not accept ``control_id`` if it does not."""
    try:
        ack = parse_message(raw.decode("utf-8", "replace"), validation_level=VALIDATION_LEVEL.TOLERANT)
        code = ack.msa.msa_1.to_er7()
        acknowledged = ack.msa.msa_2.to_er7()
    except (HL7apyException, AttributeError, IndexError, ValueError) as error:
        return Answer("", f"an answer that is not an HL7 acknowledgement ({type(error).__name__})")
    if acknowledged != control_id:
        return Answer("", f"an acknowledgement of another message ({acknowledged[:20]!r})")
    if code in ACCEPTED:
        return Answer(code)
    errors = [segment.to_er7() for segment in ack.children if segment.name == "ERR"]
    text = ack.msa.msa_3.to_er7() or "; ".join(errors)
    return Answer(code, f"{code}: {text[:200]}" if text else code)
