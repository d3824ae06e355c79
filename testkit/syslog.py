"""A syslog collector in the test process, as an audit record repository (IHE ATNA) would take
triage's audit messages: octet-counted RFC 5424 frames (RFC 6587 over TCP, RFC 5425 over TLS)."""

from __future__ import annotations

import re
import socketserver
import ssl
import threading
from xml.etree import ElementTree as ET

FRAME = re.compile(
    rb"^<85>1 (\S+) (\S+) triage - DICOM\+RFC3881 \[meta sequenceId=\"(\d+)\"\] \xef\xbb\xbf(.*)$", re.S
)


class Collector:
    """A syslog collector: reads octet-counted frames (RFC 6587 / RFC 5425) off each connection."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None) -> None:
        self.frames: list[bytes] = []  # appended by the handler threads
        collector = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                connection = self.request
                if tls is not None:
                    try:
                        connection = tls.wrap_socket(connection, server_side=True)
                    except (ssl.SSLError, OSError):
                        return
                buffer = b""
                while chunk := connection.recv(65536):
                    buffer += chunk
                    while b" " in buffer:
                        length, _, rest = buffer.partition(b" ")
                        if len(rest) < int(length):
                            break
                        collector.frames.append(rest[: int(length)])
                        buffer = rest[int(length) :]

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def messages(self) -> list[tuple[int, ET.Element]]:
        parsed = []
        for frame in self.frames:
            found = FRAME.match(frame)
            assert found, frame[:200]
            parsed.append((int(found.group(3)), ET.fromstring(found.group(4))))
        return parsed

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def sequence_ids(self) -> list[int]:
        """The RFC 5424 ``meta sequenceId`` of every frame taken (the audit event's id)."""
        return [sequence for sequence, _ in self.messages()]
