"""A RIS in the test process: an HL7 v2 MLLP listener that parses every message with hl7apy,
validates it strictly against HL7 2.5.1, keeps it, and answers as told (AA, AE, AR, nothing, or a
closed connection)."""

from __future__ import annotations

import socketserver
import threading
from dataclasses import dataclass, field

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import parse_message

START, END = b"\x0b", b"\x1c\x0d"


@dataclass
class Received:
    raw: str
    message: Message
    valid: bool
    problem: str = ""


@dataclass
class Ris:
    """``answer``: AA, AE or AR; ``silent`` holds the connection without a word; ``hang_up`` closes it."""

    port: int
    answer: str = "AA"
    received: list[Received] = field(default_factory=list)
    _server: socketserver.ThreadingTCPServer | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Ris:
        ris = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                buffer = b""
                while chunk := self.request.recv(65536):
                    buffer += chunk
                    while END in buffer:
                        frame, _, buffer = buffer.partition(END)
                        reply = ris.take(frame.removeprefix(START).decode("utf-8"))
                        if reply is None:
                            return
                        self.request.sendall(START + reply.encode("utf-8") + END)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def take(self, raw: str) -> str | None:
        """Keep the message; the acknowledgement to send (None: hang up without one)."""
        message = parse_message(raw, validation_level=VALIDATION_LEVEL.STRICT)
        try:
            valid, problem = bool(message.validate()), ""
        except Exception as error:  # noqa: BLE001 - hl7apy raises its own per rule; the test reads it
            valid, problem = False, str(error)
        self.received.append(Received(raw, message, valid, problem))
        if self.answer == "hang_up":
            return None
        if self.answer == "silent":
            self._stopped.wait(60)
            return None
        control_id = message.msh.msh_10.to_er7()
        code = self.answer if valid else "AE"
        text = "" if code == "AA" else f"|{problem or 'refused by the test RIS'}"
        return (
            "MSH|^~\\&|RIS||TRIAGE||20261207120000||ACK^R01^ACK|A" + control_id + "|P|2.5.1\r"
            f"MSA|{code}|{control_id}{text}\r"
        )

    def observations(self, index: int = -1) -> dict[str, str]:
        """OBX-3's identifier -> OBX-5 as sent, of one received message."""
        segments = [s.split("|") for s in self.received[index].raw.split("\r") if s.startswith("OBX|")]
        return {fields[3].split("^")[0]: fields[5] for fields in segments}

    def segment(self, name: str, index: int = -1) -> list[str]:
        """The fields of the first ``name`` segment of one received message (field 0 is the name)."""
        found = [s for s in self.received[index].raw.split("\r") if s.startswith(f"{name}|")]
        return found[0].split("|")
