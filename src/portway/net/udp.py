"""UDP over data channels: whole datagrams through a channel, one session per sender address.

Three pieces, shared by the hub and the agents (docs/protocol.md, "Datagram framing"):

* :class:`DatagramChannel` is the protocol of an assigned UDP data channel: it decodes incoming
  datagram framing into whole datagrams and frames outgoing ones, one record per datagram (never
  merged). ``send`` never waits: when the channel's write buffer is full the datagram is dropped
  and the caller counts it, so memory stays bounded under overload.
* :class:`UdpSession` joins one sender (a visitor address on a hub port, a local client of a
  reaching agent, or the reaching agent's channel on the hub) with one channel. Datagrams that
  arrive before the channel is attached are held, at most :data:`PENDING_DATAGRAMS` /
  :data:`PENDING_BYTES`, and flushed on attach; more are dropped. An optional idle timer ends the
  session with ``idle_timeout`` when nothing passed either way for its period.
* :class:`UdpSessionTable` is the :class:`asyncio.DatagramProtocol` of a listening UDP socket:
  each new sender address gets a session from ``opener``; replies go back only to that address.

Nothing here awaits: every datagram is handled inside the callback that read it.
"""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import time
from collections.abc import Callable
from typing import Any, cast

from portway.wire.codes import Reason
from portway.wire.datagram import MAX_DATAGRAM, DatagramDecoder, encode_close, encode_datagram
from portway.wire.errors import ProtocolError
from portway.wire.frames import Bytes

DEFAULT_LIMIT = 256 * 1024  # write buffer (channel or socket) above which datagrams are dropped
PENDING_DATAGRAMS = 64  # held per session while its channel is being set up
PENDING_BYTES = 256 * 1024
DEFAULT_IDLE_TIMEOUT = 60.0

Address = tuple[Any, ...]


class DatagramChannel(asyncio.Protocol):
    """An assigned data channel carrying datagram framing.

    Created by whoever detached the channel (hub UDP session or reach relay, exposing agent,
    reaching agent) and handed its transport with :meth:`attach` in the same step, with no
    ``await`` in between. Each received datagram goes to ``on_datagram`` (a memoryview valid only
    during the call: send or copy it at once). When the far side ends the channel (CLOSE marker,
    EOF, error, framing violation) ``on_end(reason)`` is called once; :meth:`close` ends it from
    this side and does not call ``on_end``.
    """

    def __init__(
        self,
        on_datagram: Callable[[memoryview], None],
        on_end: Callable[[Reason], None],
        *,
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        self.transport: asyncio.Transport | None = None
        self.decoder = DatagramDecoder()
        self.limit = limit
        self.ended = False
        self._on_datagram = on_datagram
        self._on_end = on_end

    def attach(self, transport: asyncio.Transport, rest: Bytes = b"") -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=self.limit)
        transport.set_protocol(self)
        if rest:
            self.data_received(bytes(rest))

    def send(self, datagram: Bytes) -> bool:
        """Frame and write one datagram; False (dropped) when the channel cannot take it now."""
        transport = self.transport
        if (
            transport is None
            or self.ended
            or len(datagram) > MAX_DATAGRAM
            or transport.get_write_buffer_size() >= self.limit
        ):
            return False
        transport.write(encode_datagram(datagram))
        return True

    def close(self, reason: Reason) -> None:
        """End the session from this side: a CLOSE marker with ``reason``, then close."""
        if self.ended:
            return
        self.ended = True
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(encode_close(reason))
            transport.close()

    # -- asyncio callbacks ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.ended:
            return
        try:
            datagrams = self.decoder.feed(data)
        except ProtocolError:
            self._end(Reason.PROTOCOL_ERROR)
            return
        for datagram in datagrams:
            self._on_datagram(datagram)
        if self.decoder.closed is not None and not self.ended:
            self._end(self.decoder.closed)

    def eof_received(self) -> bool:
        self._end(Reason.RESET)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(Reason.RESET)

    def _end(self, reason: Reason) -> None:
        if self.ended:
            return
        self.ended = True
        if self.transport is not None:
            self.transport.close()
        self._on_end(reason)


class UdpSession:
    """One sender's session: datagrams from the sender go into a channel, replies come back.

    Created by a :class:`UdpSessionTable` (or the hub's reach relay); its owner pairs it with a
    channel later and calls :meth:`attach`, or :meth:`reset` when no channel can be had. Reads
    as a ``Relay`` for the hub's counters (leg ``a`` = the sender). ``on_close`` is called once
    when the session ends, for whatever reason (:attr:`result`).
    """

    def __init__(
        self,
        address: Address | None,
        reply: Callable[[memoryview, Address | None], bool],
        on_close: Callable[[UdpSession], None] | None = None,
        *,
        idle_timeout: float | None = None,
    ) -> None:
        self.address = address
        self.channel: DatagramChannel | None = None
        self.open = True
        self.result: Reason | None = None
        self.pending: collections.deque[bytes] = collections.deque()
        self.pending_size = 0
        self.datagrams_in = 0  # sender -> channel
        self.datagrams_out = 0  # channel -> sender
        self.datagrams_dropped = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.last_activity = time.monotonic()
        self._reply = reply
        self._on_close = on_close
        self._idle_timeout = idle_timeout
        self._timer: asyncio.TimerHandle | None = None
        if idle_timeout is not None:
            self._arm(idle_timeout)

    # Relay protocol (portway.hub.dataplane.traffic)
    @property
    def bytes_a_to_b(self) -> int:
        return self.bytes_in

    @property
    def bytes_b_to_a(self) -> int:
        return self.bytes_out

    def from_sender(self, datagram: Bytes) -> None:
        """A datagram from the sender: into the channel, held until it attaches, or dropped."""
        self.last_activity = time.monotonic()
        if not self.open:
            self.datagrams_dropped += 1
            return
        channel = self.channel
        if channel is not None:
            if channel.send(datagram):
                self.datagrams_in += 1
                self.bytes_in += len(datagram)
            else:
                self.datagrams_dropped += 1
        elif (
            len(self.pending) < PENDING_DATAGRAMS
            and self.pending_size + len(datagram) <= PENDING_BYTES
            and len(datagram) <= MAX_DATAGRAM
        ):
            self.pending.append(bytes(datagram))
            self.pending_size += len(datagram)
        else:
            self.datagrams_dropped += 1

    def attach(self, transport: asyncio.Transport, rest: Bytes = b"") -> None:
        """Adopt the assigned channel (same step as its detach) and flush what was held."""
        channel = DatagramChannel(self._from_channel, self._channel_ended)
        self.channel = channel
        channel.attach(transport, rest)
        if not self.open:
            channel.close(self.result or Reason.CLOSED)
            return
        held, self.pending, self.pending_size = self.pending, collections.deque(), 0
        for datagram in held:
            self.from_sender(datagram)

    def reset(self, reason: Reason = Reason.CLOSED) -> None:
        """End the session (paused, deleted, idle, no channel): CLOSE to the channel if any."""
        if not self.open:
            return
        self.open = False
        self.result = reason
        self.datagrams_dropped += len(self.pending)
        self.pending.clear()
        self.pending_size = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.channel is not None:
            self.channel.close(reason)
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close(self)

    def _from_channel(self, datagram: memoryview) -> None:
        self.last_activity = time.monotonic()
        if self._reply(datagram, self.address):
            self.datagrams_out += 1
            self.bytes_out += len(datagram)
        else:
            self.datagrams_dropped += 1

    def _channel_ended(self, reason: Reason) -> None:
        self.reset(reason)

    def _arm(self, delay: float) -> None:
        self._timer = asyncio.get_running_loop().call_later(delay, self._check_idle)

    def _check_idle(self) -> None:
        self._timer = None
        timeout = self._idle_timeout
        if not self.open or timeout is None:
            return
        left = self.last_activity + timeout - time.monotonic()
        if left <= 0:
            self.reset(Reason.IDLE_TIMEOUT)
        else:
            self._arm(left)


class UdpSessionTable(asyncio.DatagramProtocol):
    """A listening UDP socket whose senders each get their own :class:`UdpSession`.

    Used by the hub's public UDP ports and by reaching agents' local UDP listeners. For a new
    address ``opener(session)`` is called; it starts pairing the session with a channel (and
    later calls ``session.attach``) and returns True, or returns False to refuse (the datagram
    is dropped and no session kept). ``idle_timeout()`` is read for each new session (None: the
    far side expires sessions). ``on_closed`` hears of every session that ended.
    """

    def __init__(
        self,
        opener: Callable[[UdpSession], bool],
        *,
        idle_timeout: Callable[[], float | None] = lambda: None,
        on_closed: Callable[[UdpSession], None] | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.sessions: dict[Address, UdpSession] = {}
        self.refused = 0
        self.limit = limit
        self._opener = opener
        self._idle_timeout = idle_timeout
        self._on_closed = on_closed
        self._lost: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self._lost = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        session = self.sessions.get(addr)
        if session is None:
            session = UdpSession(addr, self._reply, self._closed, idle_timeout=self._idle_timeout())
            if not self._opener(session):
                self.refused += 1
                session.reset(Reason.UNAVAILABLE)
                return
            if session.open:
                self.sessions[addr] = session
        session.from_sender(data)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error about one sender; sessions carry on

    def connection_lost(self, exc: Exception | None) -> None:
        self.close_sessions(Reason.CLOSED)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    async def wait_closed(self) -> None:
        """Wait until the socket is really closed (its port free again) after :meth:`close`."""
        if self._lost is not None:
            await asyncio.shield(self._lost)

    def close_sessions(self, reason: Reason) -> None:
        for session in list(self.sessions.values()):
            session.reset(reason)

    def close(self, reason: Reason = Reason.CLOSED) -> None:
        """Stop listening and end every session with ``reason``."""
        self.close_sessions(reason)
        if self.transport is not None:
            self.transport.close()

    def _reply(self, datagram: memoryview, addr: Address | None) -> bool:
        transport = self.transport
        if (
            transport is None
            or addr is None
            or transport.is_closing()
            or buffered_size(transport) >= self.limit
        ):
            return False
        return send_datagram(transport, datagram, addr)

    def _closed(self, session: UdpSession) -> None:
        if session.address is not None and self.sessions.get(session.address) is session:
            del self.sessions[session.address]
        if self._on_closed is not None:
            self._on_closed(session)


def buffered_size(transport: asyncio.DatagramTransport) -> int:
    """Bytes a UDP transport holds unsent (asyncio and uvloop both have this; typeshed lacks it)."""
    size: int = getattr(transport, "get_write_buffer_size", lambda: 0)()
    return size


def send_datagram(
    transport: asyncio.DatagramTransport, datagram: Bytes, addr: Address | None = None
) -> bool:
    """`transport.sendto`, except that an empty datagram is sent too (asyncio silently drops
    empty datagrams before Python 3.13; they are legal UDP and some protocols use them)."""
    if datagram:
        transport.sendto(datagram, addr)
        return True
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        with socket.socket(sock.family, sock.type, fileno=os.dup(sock.fileno())) as raw:
            if addr is None:
                raw.send(b"")
            else:
                raw.sendto(b"", addr)
    except OSError:
        return False
    return True
