"""Stream framing of an assigned TCP data channel.

After the assignment handshake each direction of a data channel is a sequence of chunks::

    [u32 n][n bytes]    1 <= n <= MAX_CHUNK: payload
    [u32 0]             EOF: this direction is finished (half-close); the other may go on
    [u32 0xFFFFFFFF][u8 reason]   RESET: abort the connection, for the given Reason

Half-close has to travel in-band because a TLS transport in asyncio cannot ``write_eof``.
Overhead is 4 bytes per chunk, and a writer makes one chunk per ``data_received``, so typically 4
bytes per 64-256 KiB.

The decoder never buffers payload: it returns ``memoryview`` slices of the buffer it was fed, so a
relay writes them straight to the other transport. Only a header split across two reads (at most 4
bytes) is kept between calls.
"""

from __future__ import annotations

import struct

from portway.wire.codes import Reason
from portway.wire.errors import ProtocolError
from portway.wire.frames import Bytes

MAX_CHUNK = 1024 * 1024
"""Largest payload of one chunk; writers split, readers reject anything larger as garbage."""
RESET_MARK = 0xFFFFFFFF
_U32 = struct.Struct(">I")
EOF_CHUNK = _U32.pack(0)


def chunk_header(length: int) -> bytes:
    """The 4-byte header of a payload chunk of ``length`` (1..MAX_CHUNK) bytes."""
    if not 0 < length <= MAX_CHUNK:
        raise ValueError(f"chunk length {length} is outside 1..{MAX_CHUNK}")
    return _U32.pack(length)


def encode_chunks(data: Bytes) -> list[Bytes]:
    """Header and payload pieces for ``data``, for one ``transport.writelines`` call.

    Called on the relay's hot path for every read from a raw socket. The payload is not copied:
    the list holds ``data`` itself (or slices of it when longer than MAX_CHUNK). Empty data
    yields no chunk, since a zero length means EOF.
    """
    n = len(data)
    if n <= MAX_CHUNK:
        return [_U32.pack(n), data] if n else []
    view = memoryview(data)
    parts: list[Bytes] = []
    for start in range(0, n, MAX_CHUNK):
        piece = view[start : start + MAX_CHUNK]
        parts += (_U32.pack(len(piece)), piece)
    return parts


def encode_reset(reason: Reason) -> bytes:
    """The 5-byte RESET marker; the writer closes the channel after it."""
    return _U32.pack(RESET_MARK) + bytes((int(reason),))


class StreamDecoder:
    """Sans-IO decoder of one direction of an assigned data channel.

    Fed by the relay's ``data_received``; :meth:`feed` returns the payload slices found, then the
    caller checks :attr:`eof` and :attr:`reset` (in that order: within one direction, payload
    comes before EOF, and a reset may follow either).
    """

    __slots__ = ("_remaining", "_stash", "_stop_at_eof", "eof", "reset", "rest")

    def __init__(self, *, stop_at_eof: bool = False) -> None:
        self.eof = False
        """The sender finished this direction."""
        self.reset: Reason | None = None
        """The sender aborted the connection; nothing may follow."""
        self.rest = b""
        """With ``stop_at_eof``: the bytes after EOF, which are frames of the channel's next use
        (a reused data channel, see ``docs/protocol.md``), not stream chunks."""
        self._stop_at_eof = stop_at_eof
        self._remaining = 0  # payload bytes still due for the current chunk
        self._stash = b""  # a header split across reads

    @property
    def at_boundary(self) -> bool:
        """True between chunks: a relay that forwards these bytes unchanged may inject its own
        RESET marker into the copy here without corrupting it."""
        return not self._remaining and not self._stash

    def feed(self, data: Bytes) -> list[memoryview]:
        """Consume ``data``; return payload slices of it, in order, without copying.

        The slices alias ``data``: if it is a reused buffer, use them before the next read.
        Raises :class:`ProtocolError` on a bad header, data after EOF or anything after RESET.
        """
        view = memoryview(data)
        end = len(view)
        out: list[memoryview] = []
        pos = 0
        while pos < end:
            if self.eof and self._stop_at_eof:
                self.rest += bytes(view[pos:end])
                break
            if self._remaining:
                stop = min(end, pos + self._remaining)
                out.append(view[pos:stop])
                self._remaining -= stop - pos
                pos = stop
            elif self._stash:
                old = len(self._stash)
                head = self._stash + bytes(view[pos : pos + 5])
                used = self._header(head, 0, len(head))
                if used is None:
                    self._stash = head
                    pos = end
                else:
                    self._stash = b""
                    pos += used - old
            else:
                used = self._header(view, pos, end)
                if used is None:
                    self._stash = bytes(view[pos:end])
                    pos = end
                else:
                    pos += used
        return out

    def _header(self, buf: Bytes, pos: int, end: int) -> int | None:
        """Parse the header at ``buf[pos:end]``; return its size, or None if incomplete."""
        if self.reset is not None:
            raise ProtocolError("bytes after a stream reset")
        if end - pos < 4:
            return None
        (length,) = _U32.unpack_from(buf, pos)
        if length == RESET_MARK:
            if end - pos < 5:
                return None
            self.reset = Reason.from_code(buf[pos + 4])
            return 5
        if self.eof:
            raise ProtocolError("stream data after EOF")
        if length == 0:
            self.eof = True
        elif length <= MAX_CHUNK:
            self._remaining = length
        else:
            raise ProtocolError(f"stream chunk of {length} bytes exceeds {MAX_CHUNK}")
        return 4
