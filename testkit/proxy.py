"""A TCP proxy on loopback that can cut a link the way a dead host or a broken network does: it
stops forwarding in both directions and closes nothing, so neither end sees a FIN or a RST."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from testkit.peers import free_port


class CuttableProxy:
    """Forwards 127.0.0.1:``port`` to ``target_port``; ``cut()`` freezes every link, ``down()``
    refuses new connections and resets the open ones (a server that is down), ``up()`` listens
    again on the same port, ``close()`` ends them all."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._sockets: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        """Stop forwarding, without closing anything: bytes sent now are never answered."""
        self._forwarding.clear()

    def down(self) -> None:
        """The server is gone: open links are reset, new connections refused, until ``up()``."""
        with contextlib.suppress(OSError):  # stop listening now: a blocked accept() keeps it open
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
                sock.close()
        self._sockets.clear()

    def up(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._forwarding.set()
        for sock in [self._server, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                sink.close()
                return
            self._forwarding.wait()  # cut: hold what came, forever
            try:
                sink.sendall(data)
            except OSError:
                return
