"""Small UDP origins for end-to-end tests, each in a background thread on loopback.

`UdpEchoOrigin` sends every datagram back to its sender and remembers the sender addresses it
saw (each UDP session through a tunnel is one socket on the exposing agent, so one address
here). `DnsOrigin` is a minimal DNS responder: it parses the question and answers an A record
from its table (NXDOMAIN otherwise), enough for `dig`.

with UdpEchoOrigin() as echo: ... echo.port ... echo.senders
"""

from __future__ import annotations

import abc
import contextlib
import select
import socket
import struct
import threading
from types import TracebackType

MAX_UDP = 65535


class _UdpOrigin(abc.ABC):
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.senders: list[tuple[str, int]] = []  # distinct, in order of first datagram
        self._seen: set[tuple[str, int]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @abc.abstractmethod
    def answer(self, datagram: bytes) -> bytes | None:
        """The reply to one datagram (None: no reply)."""

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if not ready:
                continue
            try:
                data, addr = self.sock.recvfrom(MAX_UDP)
            except OSError:
                continue
            if addr not in self._seen:
                self._seen.add(addr)
                self.senders.append(addr)
            reply = self.answer(data)
            if reply is not None:
                with contextlib.suppress(OSError):  # a sender that went away
                    self.sock.sendto(reply, addr)

    def __enter__(self) -> _UdpOrigin:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


class UdpEchoOrigin(_UdpOrigin):
    def answer(self, datagram: bytes) -> bytes | None:
        return datagram

    def __enter__(self) -> UdpEchoOrigin:
        super().__enter__()
        return self


_HEADER = struct.Struct(">HHHHHH")


def parse_question(query: bytes) -> tuple[int, int, str, int, bytes]:
    """(id, flags, name, qtype, raw question) of a DNS query; ValueError when malformed."""
    if len(query) < _HEADER.size:
        raise ValueError("short DNS header")
    ident, flags, qdcount, _an, _ns, _ar = _HEADER.unpack_from(query)
    if qdcount != 1:
        raise ValueError("expected one question")
    pos, labels = _HEADER.size, []
    while True:
        if pos >= len(query):
            raise ValueError("truncated name")
        length = query[pos]
        pos += 1
        if length == 0:
            break
        if length > 63:
            raise ValueError("compressed or invalid label in a question")
        labels.append(query[pos : pos + length].decode("ascii").lower())
        pos += length
    if pos + 4 > len(query):
        raise ValueError("truncated question")
    qtype = struct.unpack_from(">H", query, pos)[0]
    return ident, flags, ".".join(labels), qtype, query[_HEADER.size : pos + 4]


def dns_answer(query: bytes, records: dict[str, str]) -> bytes | None:
    """The reply to `query`: an A record from `records`, NXDOMAIN for unknown names."""
    try:
        ident, flags, name, qtype, question = parse_question(query)
    except ValueError:
        return None
    address = records.get(name)
    rd = flags & 0x0100
    if address is None:
        return _HEADER.pack(ident, 0x8080 | rd | 3, 1, 0, 0, 0) + question
    answers = b""
    if qtype in (1, 255):  # A or ANY
        answers = struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(address)
    count = 1 if answers else 0
    return _HEADER.pack(ident, 0x8480 | rd, 1, count, 0, 0) + question + answers


class DnsOrigin(_UdpOrigin):
    def __init__(self, records: dict[str, str]) -> None:
        super().__init__()
        self.records = {name.lower().rstrip("."): value for name, value in records.items()}

    def answer(self, datagram: bytes) -> bytes | None:
        return dns_answer(datagram, self.records)

    def __enter__(self) -> DnsOrigin:
        super().__enter__()
        return self
