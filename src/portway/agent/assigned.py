"""Serving an `assign` for a tunnel this agent exposes: dial the target and join it to the
stream the assign opened (or serve UDP), after checking the agent serves that tunnel.

`AgentRuntime` calls `dial_stream()` for a dial of a plain TCP target: the target's socket is
joined to the stream directly, and the stream's bytes that followed the assign (a visitor's
first bytes, sent by the hub without waiting for `assign_ok`) wait in it, uncredited, until
then. Every other assignment reads on through a framed channel (`framed()`): `served()` checks
the tunnel, `dial()` dials a TLS or UDP target.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterable

from portway.agent.dialer import Dialer, DialError
from portway.agent.udp import serve_udp
from portway.net.framed import ConnectionClosed, FramedConnection
from portway.net.mux_socket import SocketStream, hand_over
from portway.net.mux_stream import MuxStream
from portway.net.mux_transport import StreamTransport
from portway.net.splice import Splice
from portway.wire.assignment_messages import Assign, AssignError, AssignOk
from portway.wire.codes import Reason
from portway.wire.control_messages import Protocol, TunnelSpec
from portway.wire.messages import Message, encode

log = logging.getLogger("portway.agent")

NOT_SERVED = "this agent does not serve that tunnel"


NEW_TUNNEL_WAIT = 2.0
"""How long an assignment for a tunnel (or target) this agent does not know yet waits for the
desired state that brings it. The hub pushes a new tunnel on the control session and may assign
a visitor of it on a data channel, another connection, at once: that one can arrive first."""


class ServedTunnels:
    """The tunnels this agent serves, as the latest desired state lists them. `AgentRuntime`
    calls `update()` on each `desired_state`; `served()` looks an assignment's tunnel up."""

    def __init__(self) -> None:
        self.specs: dict[str, TunnelSpec] = {}
        self._changed = asyncio.Event()

    def update(self, specs: Iterable[TunnelSpec]) -> None:
        self.specs = {spec.id: spec for spec in specs}
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _match(self, assign: Assign) -> TunnelSpec | None:
        spec = self.specs.get(assign.tunnel)
        if spec is None or (spec.host, spec.port) != (assign.host, assign.port):
            return None
        return spec

    async def find(self, assign: Assign, *, wait: float = NEW_TUNNEL_WAIT) -> TunnelSpec | None:
        """The tunnel `assign` names, at the target it names, once a desired state lists it
        (waiting up to `wait`); None when none did."""
        if (spec := self._match(assign)) is not None:
            return spec  # the usual case: no timer
        try:
            async with asyncio.timeout(wait):
                while (spec := self._match(assign)) is None:
                    await self._changed.wait()
        except TimeoutError:
            return None
        return spec


def joins_directly(assign: Assign) -> bool:
    """Whether a dial's target socket is joined to its stream directly: a plain TCP target
    (TLS targets go through a splice, UDP through datagram framing)."""
    return assign.protocol is not Protocol.UDP and target_tls(assign) is None


async def dial_stream(
    dialer: Dialer, tunnels: ServedTunnels, stream: MuxStream, assign: Assign
) -> None:
    """Serve a dial of a plain TCP target (`joins_directly`) on the stream its `assign`
    opened: dial, answer `assign_ok`, join the target's socket to the stream, which hands it
    the bytes held since the assign; or answer `assign_error` and close the stream."""
    spec = await tunnels.find(assign)
    if spec is None:
        refuse(stream, AssignError(assign.conn, Reason.CLOSED, NOT_SERVED))
        return
    target = SocketStream()
    try:
        await dialer.connect(spec.host, spec.port, lambda: target)
    except DialError as exc:
        log.warning("cannot reach target", extra={"tunnel": spec.name, "error": exc.message})
        refuse(stream, AssignError(assign.conn, exc.reason, exc.message))
        target.reset(exc.reason)
        return
    # Before anything the target sent (held by its socket meanwhile): the hub reads the answer
    # off the stream's first bytes. A stream the hub reset meanwhile drops it, and `join`
    # passes the reset on to the target.
    stream.write(encode(AssignOk(assign.conn)))
    target.join(stream)


def framed(stream: MuxStream) -> FramedConnection:
    """The rest of `stream` read as messages (a diagnosis, a reach or UDP assignment, a TLS
    dial), the bytes held since its first message first."""
    channel = FramedConnection()
    StreamTransport(stream, channel)
    return channel


def refuse(stream: MuxStream, answer: Message) -> None:
    """Answer `answer` (an `assign_error`) and close the stream; what the hub sent after its
    assign is dropped (and credited) until its RST or FIN ends the stream."""
    channel = framed(stream)
    with contextlib.suppress(ConnectionClosed):  # the hub reset it first
        channel.send(answer)
    channel.close()


async def served(
    tunnels: ServedTunnels, channel: FramedConnection, assign: Assign
) -> TunnelSpec | None:
    """The tunnel `assign` names if this agent serves it at that target; else answers
    `assign_error` on `channel` and returns None."""
    spec = await tunnels.find(assign)
    if spec is None:
        channel.send(AssignError(assign.conn, Reason.CLOSED, NOT_SERVED))
    return spec


async def dial(dialer: Dialer, spec: TunnelSpec, channel: FramedConnection, assign: Assign) -> bool:
    """Dial `spec`'s UDP or TLS target (what `joins_directly` does not take) and join it to
    `channel`'s stream; whether the stream was handed over (else the caller closes it). A TLS
    target (an https target the edge asked for) goes through a splice, since a TLS transport
    cannot half-close."""
    if assign.protocol is Protocol.UDP:
        return await serve_udp(dialer, spec, channel, assign)
    splice = Splice()
    try:
        # The target is leg `a` of the splice: `hand_over` gives the stream leg `b`.
        await dialer.connect(
            spec.host, spec.port, splice.connector(splice.a), ssl_context=target_tls(assign)
        )
    except DialError as exc:
        log.warning("cannot reach target", extra={"tunnel": spec.name, "error": exc.message})
        channel.send(AssignError(assign.conn, exc.reason, exc.message))
        splice.reset(exc.reason)
        return False
    try:
        channel.send(AssignOk(assign.conn))
    except ConnectionClosed:
        splice.reset(Reason.RESET)
        return False
    transport, rest = channel.detach()
    hand_over(splice, transport, rest)
    return True


def target_tls(assign: Assign) -> ssl.SSLContext | None:
    """TLS towards the target when the hub's edge asks for it (https tunnels): verified against
    the system CAs unless the tunnel's metadata says `{"tlsVerify": false}`."""
    if assign.protocol is not Protocol.HTTPS:
        return None
    context = ssl.create_default_context()
    if assign.tls_verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
