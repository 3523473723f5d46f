"""Datagram framing of an assigned UDP data channel.

After an assignment with ``protocol == "udp"`` each direction is a sequence of records::

    [u16 n][n bytes]        0 <= n <= 65507: one datagram (empty datagrams are legal UDP)
    [u16 0xFFFF][u8 reason] CLOSE: the session is over (idle expiry, reset...); nothing follows

A datagram is delivered whole or not at all. Two bytes of length suffice because a UDP payload
over IPv4 is at most 65,507 bytes; 65508..65534 are invalid and 0xFFFF is the close marker.
"""

from __future__ import annotations

import struct

from portway.wire.codes import Reason
from portway.wire.errors import ProtocolError
from portway.wire.frames import Bytes

MAX_DATAGRAM = 65507
CLOSE_MARK = 0xFFFF
_U16 = struct.Struct(">H")
_MAX_RECORD = _U16.size + MAX_DATAGRAM


def datagram_header(length: int) -> bytes:
    """The 2-byte header for a datagram of ``length`` bytes (write it, then the datagram)."""
    if not 0 <= length <= MAX_DATAGRAM:
        raise ValueError(f"datagram of {length} bytes exceeds {MAX_DATAGRAM}")
    return _U16.pack(length)


def encode_datagram(datagram: Bytes) -> bytes:
    """Header and datagram in one buffer; called per datagram by the UDP relay (datagrams are
    small, so one copy here is cheaper than a second ``write`` call)."""
    return datagram_header(len(datagram)) + datagram


def encode_close(reason: Reason) -> bytes:
    """The 3-byte CLOSE marker; the writer closes the channel after it."""
    return _U16.pack(CLOSE_MARK) + bytes((int(reason),))


class DatagramDecoder:
    """Sans-IO decoder of one direction of a UDP data channel.

    Fed by the relay's ``data_received``; :meth:`feed` returns whole datagrams: slices of the fed
    buffer when a datagram lies inside one read, a copy when it spans reads. After a CLOSE,
    :attr:`closed` holds its reason and any further byte is a :class:`ProtocolError`.
    """

    __slots__ = ("_partial", "closed")

    def __init__(self) -> None:
        self.closed: Reason | None = None
        self._partial = bytearray()  # an incomplete record, at most 65,509 bytes

    def feed(self, data: Bytes) -> list[memoryview]:
        view = memoryview(data)
        end = len(view)
        out: list[memoryview] = []
        pos = 0
        while pos < end:
            partial = self._partial
            if partial:
                old = len(partial)
                partial += view[pos : pos + _MAX_RECORD - old]
                used = self._record(partial, 0, len(partial), out)
                if used is None:
                    pos = end  # everything went into the partial record
                else:
                    pos += used - old
                    partial.clear()
            else:
                used = self._record(view, pos, end, out)
                if used is None:
                    partial += view[pos:end]
                    pos = end
                else:
                    pos += used
        return out

    def _record(self, buf: Bytes, pos: int, end: int, out: list[memoryview]) -> int | None:
        """Parse one record at ``buf[pos:end]``; append its datagram; return its size."""
        if self.closed is not None:
            raise ProtocolError("bytes after a datagram close")
        if end - pos < 2:
            return None
        length: int = _U16.unpack_from(buf, pos)[0]
        if length == CLOSE_MARK:
            if end - pos < 3:
                return None
            self.closed = Reason.from_code(buf[pos + 2])
            return 3
        if length > MAX_DATAGRAM:
            raise ProtocolError(f"datagram of {length} bytes exceeds {MAX_DATAGRAM}")
        stop = pos + 2 + length
        if stop > end:
            return None
        if isinstance(buf, bytearray):  # the partial buffer is reused: copy the datagram out
            out.append(memoryview(bytes(buf[pos + 2 : stop])))
        else:
            out.append(memoryview(buf)[pos + 2 : stop])
        return stop - pos
