"""A TCP forwarder that end-to-end tests place between an agent and the hub to cut one of the
agent's connections on purpose (a NAT dropping a flow, a cable pulled), in background threads.

`CutProxy(upstream_port)` listens on a free loopback port and forwards every accepted
connection, byte for byte, to `upstream_port`; `connections` lists them in the order they were
accepted, and `cut(i)` resets both sides of the i-th one (an RST each way, no FIN).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

_LINGER_RESET = struct.pack("ii", 1, 0)


@dataclass
class Forwarded:
    client: socket.socket
    upstream: socket.socket
    accepted_at: float = field(default_factory=time.monotonic)
    cut: bool = False

    @property
    def open(self) -> bool:
        return not self.cut and self.client.fileno() != -1

    def reset(self) -> None:
        self.cut = True
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class CutProxy:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self._upstream = (host, upstream_port)
        self._listener = socket.create_server((host, 0), backlog=64)
        self.port: int = self._listener.getsockname()[1]
        self.connections: list[Forwarded] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closing = False

    def __enter__(self) -> CutProxy:
        self._spawn(self._accept)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def live(self) -> list[Forwarded]:
        with self._lock:
            return [c for c in self.connections if c.open]

    def cut(self, index: int) -> Forwarded:
        """Reset both sides of the `index`-th accepted connection; returns it."""
        with self._lock:
            connection = self.connections[index]
        connection.reset()
        return connection

    def close(self) -> None:
        self._closing = True
        self._listener.close()
        with self._lock:
            connections = list(self.connections)
        for connection in connections:
            connection.reset()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            connection = Forwarded(client, upstream)
            with self._lock:
                self.connections.append(connection)
            self._spawn(self._pump, connection, client, upstream)
            self._spawn(self._pump, connection, upstream, client)

    @staticmethod
    def _pump(connection: Forwarded, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if not connection.cut:
            connection.reset()  # either side gone: end both, as a dropped flow would
