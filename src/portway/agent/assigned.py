"""Serving an `assign` on a data channel for a tunnel this agent exposes: dial the target and
splice it to the channel (or serve UDP), after checking the agent serves that tunnel.

`AgentRuntime` calls `served()` for every `assign {mode: dial|diagnose}` and `dial()` for a
dial; a dialled TCP connection that ends cleanly hands the channel to `reuse` (the runtime
waits on it for the next assignment, `docs/protocol.md` §6).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Mapping

from portway.agent.dialer import Dialer, DialError
from portway.agent.udp import serve_udp
from portway.net.framed import ConnectionClosed, FramedConnection
from portway.net.splice import Splice
from portway.wire.codes import Reason
from portway.wire.messages import Assign, AssignError, AssignOk, Protocol, TunnelSpec

log = logging.getLogger("portway.agent")


def served(
    tunnels: Mapping[str, TunnelSpec], channel: FramedConnection, assign: Assign
) -> TunnelSpec | None:
    """The tunnel `assign` names if this agent serves it at that target; else answers
    `assign_error` on `channel` and returns None."""
    spec = tunnels.get(assign.tunnel)
    if spec is None or (spec.host, spec.port) != (assign.host, assign.port):
        channel.send(
            AssignError(assign.conn, Reason.CLOSED, "this agent does not serve that tunnel")
        )
        return None
    return spec


async def dial(
    dialer: Dialer, spec: TunnelSpec, channel: FramedConnection, assign: Assign,
    reuse: Callable[[asyncio.Transport, bytes], bool],
) -> bool:  # fmt: skip
    """Dial `spec`'s target and splice it to `channel`; whether the channel was handed over
    (else the caller closes it)."""
    if assign.protocol is Protocol.UDP:
        return await serve_udp(dialer, spec, channel, assign)
    splice = Splice(a_framed=True, b_framed=False)
    splice.reuse(splice.a, reuse)
    try:
        await dialer.connect(
            spec.host, spec.port, splice.connector(splice.b), ssl_context=target_tls(assign)
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
    splice.attach(splice.a, transport, rest)
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
