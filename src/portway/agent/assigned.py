"""Serving an `assign` on a data channel for a tunnel this agent exposes: dial the target and
splice it to the channel (or serve UDP), after checking the agent serves that tunnel.

`AgentRuntime` calls `served()` for every `assign {mode: dial|diagnose}` (each on a stream the
hub opened) and `dial()` for a dial.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable

from portway.agent.dialer import Dialer, DialError
from portway.agent.udp import serve_udp
from portway.net.framed import ConnectionClosed, FramedConnection
from portway.net.mux_socket import SocketStream, hand_over
from portway.net.splice import Splice
from portway.wire.codes import Reason
from portway.wire.messages import Assign, AssignError, AssignOk, Protocol, TunnelSpec

log = logging.getLogger("portway.agent")


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


async def served(
    tunnels: ServedTunnels, channel: FramedConnection, assign: Assign
) -> TunnelSpec | None:
    """The tunnel `assign` names if this agent serves it at that target; else answers
    `assign_error` on `channel` and returns None."""
    spec = await tunnels.find(assign)
    if spec is None:
        channel.send(
            AssignError(assign.conn, Reason.CLOSED, "this agent does not serve that tunnel")
        )
    return spec


async def dial(dialer: Dialer, spec: TunnelSpec, channel: FramedConnection, assign: Assign) -> bool:
    """Dial `spec`'s target and join it to `channel`'s stream; whether the stream was handed
    over (else the caller closes it). A plain TCP target is joined to the stream directly
    (`SocketStream`); a TLS one (an https target the edge asked for) through a splice, since a
    TLS transport cannot half-close."""
    if assign.protocol is Protocol.UDP:
        return await serve_udp(dialer, spec, channel, assign)
    tls = target_tls(assign)
    relay: SocketStream | Splice = SocketStream() if tls is None else Splice()
    # The target is leg `a` of a splice: `hand_over` gives the stream leg `b`.
    factory = (lambda: relay) if isinstance(relay, SocketStream) else relay.connector(relay.a)
    try:
        await dialer.connect(spec.host, spec.port, factory, ssl_context=tls)
    except DialError as exc:
        log.warning("cannot reach target", extra={"tunnel": spec.name, "error": exc.message})
        channel.send(AssignError(assign.conn, exc.reason, exc.message))
        relay.reset(exc.reason)
        return False
    try:
        channel.send(AssignOk(assign.conn))
    except ConnectionClosed:
        relay.reset(Reason.RESET)
        return False
    transport, rest = channel.detach()
    hand_over(relay, transport, rest)
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
