"""UDP on the agents: the exposing side's per-session target socket, and local UDP listeners.

`AgentRuntime._dial` hands an `Assign` with `protocol: udp` to `serve_udp`: the agent opens a
UDP socket of its own to the target for this one session (so the target's replies can only
belong to the visitor behind this channel) and relays datagrams until the channel closes.

`UdpReachListener` is the UDP twin of `agent.reach.ReachListener`, used by `portway reach`, API
binds and anything else that brings a UDP tunnel to this machine: every local client address
gets its own `UdpSession`, which the runtime pairs with a data channel through `reach_open`
exactly as it does a TCP client's splice. The hub expires idle sessions; a session whose
channel closed is forgotten and the client's next datagram opens a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import cast

from portway.agent.dialer import Dialer, DialError
from portway.net.framed import ConnectionClosed, FramedConnection
from portway.net.udp import (
    DEFAULT_LIMIT,
    DatagramChannel,
    UdpSession,
    UdpSessionTable,
    buffered_size,
    send_datagram,
)
from portway.wire.assignment_messages import Assign, AssignError, AssignOk
from portway.wire.codes import Reason
from portway.wire.control_messages import TunnelSpec

log = logging.getLogger("portway.agent.udp")

# Called with the bind id, a fresh connection id and the new session (as `reach.Opener`).
UdpOpener = Callable[[str, str, UdpSession], None]


class _TargetSocket(asyncio.DatagramProtocol):
    """The exposing agent's UDP socket to the target for one session, joined to its channel."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.channel = DatagramChannel(self._to_target, self._channel_ended)
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[object, ...]) -> None:
        if not self.channel.send(data):
            self.dropped += 1

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP "port unreachable" and the like: UDP carries on, as the visitor's would

    def connection_lost(self, exc: Exception | None) -> None:
        self.channel.close(Reason.RESET)

    def _to_target(self, datagram: memoryview) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or buffered_size(transport) >= DEFAULT_LIMIT:
            self.dropped += 1
            return
        if not send_datagram(transport, datagram):
            self.dropped += 1

    def _channel_ended(self, reason: Reason) -> None:
        if self.transport is not None:
            self.transport.close()


async def serve_udp(
    dialer: Dialer, spec: TunnelSpec, channel: FramedConnection, assign: Assign
) -> bool:
    """Answer a UDP `assign` (mode dial) on `channel`; True when the channel was taken over.

    Called by `AgentRuntime._dial`. On a policy refusal or a socket error the agent answers
    `assign_error` and the caller closes the channel.
    """
    target = _TargetSocket()
    try:
        await dialer.connect_udp(spec.host, spec.port, lambda: target)
    except DialError as exc:
        log.warning("cannot reach target", extra={"tunnel": spec.name, "error": exc.message})
        channel.send(AssignError(assign.conn, exc.reason, exc.message))
        return False
    try:
        channel.send(AssignOk(assign.conn))
    except ConnectionClosed:
        if target.transport is not None:
            target.transport.close()
        return False
    transport, rest = channel.detach()
    target.channel.attach(transport, rest)
    return True


class UdpReachListener:
    """Local UDP sockets on `addresses`:`port` for one bind; same interface as ReachListener."""

    def __init__(
        self, bind: str, label: str, addresses: Sequence[str], port: int, opener: UdpOpener
    ) -> None:
        self.bind = bind
        self.label = label
        self.addresses = tuple(addresses)
        self.port = port
        self._opener = opener
        self._tables: list[UdpSessionTable] = []

    def _open(self, session: UdpSession) -> bool:
        self._opener(self.bind, uuid.uuid4().hex, session)
        return True

    async def open(self) -> int:
        """Bind every address (IPv6 is skipped where the host has none); returns the port.

        With port 0 the first address picks a free port and the others use the same one.
        Raises OSError when the port is taken on the first address.
        """
        loop = asyncio.get_running_loop()
        port = self.port
        for index, address in enumerate(self.addresses):
            table = UdpSessionTable(self._open)
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda table=table: table,  # type: ignore[misc]
                    local_addr=(address, port),
                )
            except OSError as exc:
                if index == 0:
                    await self.close()
                    raise
                log.debug("skipping address", extra={"address": address, "error": str(exc)})
                continue
            self._tables.append(table)
            port = transport.get_extra_info("sockname")[1]
        self.port = port
        return port

    @property
    def sessions(self) -> int:
        return sum(len(table.sessions) for table in self._tables)

    async def close(self) -> None:
        tables, self._tables = self._tables, []
        for table in tables:
            table.close(Reason.CLOSED)
        for table in tables:
            with contextlib.suppress(Exception):
                await table.wait_closed()
