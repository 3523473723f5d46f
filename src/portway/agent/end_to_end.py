"""End-to-end reach on the agents (`docs/protocol.md` §19): TLS 1.3 between the reaching and the
exposing agent inside the streams the hub relays, so the hub carries records it cannot read.

`StreamServing` (`agent.serving`) holds one `EndToEnd`; the runtime keeps its `identity` and
`certificates` up to date from each `welcome` and `desired_state`. An `assign` with a `peer` is
served here: the exposing agent's dial by `dial()`, the reaching agent's stream by `reach()`.
Both answer `assign_ok` before the handshake (what the hub reads is unchanged) and relay through
a `Splice` once it is done: the bytes either end sends meanwhile are held by the splice, bounded,
and go out as records after it. A peer refused either way resets the stream with `denied`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from functools import partial
from typing import Any

from portway.agent.dialer import Dialer, DialError
from portway.net import e2e, e2e_commit, identity
from portway.net.framed import ConnectionClosed, FramedConnection
from portway.net.identity import Identity
from portway.net.mux_socket import SocketStream
from portway.net.splice import Splice
from portway.wire.assignment_messages import Assign, AssignError, AssignOk
from portway.wire.codes import Reason
from portway.wire.control_messages import TunnelSpec

log = logging.getLogger("portway.agent.e2e")

# Told (event, details) when a peer is refused or the handshake fails: `portway reach` prints it.
Reporter = Callable[[str, dict[str, Any]], None]


class EndToEnd:
    """This agent's end-to-end identity and the TLS contexts built from it, one per certificate
    (a context loads its key once; every connection reuses it)."""

    def __init__(self, report: Reporter) -> None:
        self.identity: Identity | None = None
        """This agent's certificate and its peers' CA, from the hub's last welcome."""
        self.certificates: dict[str, str] = {}
        """Tunnel id -> the certificate served to end-to-end peers of that tunnel, from the
        last desired state (protocol.md §18)."""
        self._report = report
        self._contexts: dict[tuple[str, bool], ssl.SSLContext] = {}  # (certificate, server)

    def _context(self, certificate: str, *, server: bool) -> ssl.SSLContext | None:
        mine = self.identity
        if mine is None:
            return None
        key = (certificate, server)
        context = self._contexts.get(key)
        if context is None:
            if len(self._contexts) > 4 * (len(self.certificates) + 1):
                self._contexts.clear()  # renewed certificates: forget the old ones' contexts
            context = e2e.peer_context(
                certificate.encode(), mine.key_pem, mine.peers_ca.encode(), server=server
            )
            self._contexts[key] = context
        return context

    def client_context(self) -> ssl.SSLContext | None:
        """The reaching side's context (its agent certificate); None without an identity."""
        mine = self.identity
        return None if mine is None else self._context(mine.certificate, server=False)

    def server_context(self, tunnel: str) -> ssl.SSLContext | None:
        """The exposing side's context for `tunnel` (its tunnel certificate); None when the
        hub gave none for it."""
        certificate = self.certificates.get(tunnel)
        return None if certificate is None else self._context(certificate, server=True)

    def _reach_ended(self, tunnel: str, splice: Splice) -> None:
        """A reach the exposing agent could not carry to its target says why."""
        if splice.result in TARGET_FAILURES:
            why = f"the exposing agent cannot reach the target ({splice.result.value})"
            self._report("reach_rejected", {"tunnel": tunnel, "message": why})

    def refused(self, tunnel: str, error: object, role: str) -> None:
        """Log and report a peer refused, or a handshake that failed, on the `role` side."""
        log.warning(
            "end-to-end peer refused", extra={"tunnel": tunnel, "role": role, "error": str(error)}
        )
        self._report("e2e_refused", {"tunnel": tunnel, "error": str(error)})

    async def dial(
        self, dialer: Dialer, spec: TunnelSpec, channel: FramedConnection, assign: Assign
    ) -> bool:
        """The exposing side: answer `assign_ok`, serve the TLS handshake with the tunnel's
        certificate and accept only a client whose certificate names `assign.peer`, then dial
        `spec`'s target. Whether the stream was handed over (else the caller closes it).

        The target is dialled only once the reaching side committed to this stream
        (`e2e_commit`): it may be racing a direct path. A target that cannot be reached then
        resets the stream with the reason (the reaching agent says it)."""
        context = self.server_context(assign.tunnel)
        if context is None:
            why = f"this agent holds no end-to-end certificate for tunnel {spec.name}"
            channel.send(AssignError(assign.conn, Reason.DENIED, why))
            return False
        try:
            channel.send(AssignOk(assign.conn))
        except ConnectionClosed:
            return False
        transport, rest = channel.detach()
        try:
            secured = await e2e.secure(
                transport, e2e_commit.waiter(), context, server_side=True, initial=rest,
                expect_uri=assign.peer,
            )  # fmt: skip
        except e2e.PeerRejected as exc:
            self.refused(assign.tunnel, exc, "exposing")
            return True  # `secure` reset the stream
        except e2e.E2eFailed as exc:  # the reaching side left, or chose another path
            log.info("end-to-end handshake failed", extra={"tunnel": spec.name, "error": str(exc)})
            return True
        first = await chosen(secured, spec.name)
        if first is not None:
            await carry_to_target(dialer, spec, secured, Splice(), first)
        return True

    async def reach(self, client: SocketStream, channel: FramedConnection, assign: Assign) -> bool:
        """The reaching side, once the caller sent `assign_ok` on `channel` for `client` (a
        local client of a reach listener, its bytes held): run the TLS client handshake for the
        tunnel's host name, require the server's certificate to name `assign.peer`, then relay
        `client` through it; whether it did. A refusal resets both the stream (`denied`) and
        the client; a client the direct path took meanwhile resets the stream (`gone`)."""
        context = self.client_context()
        transport, rest = channel.detach()
        splice = Splice(on_close=partial(self._reach_ended, assign.tunnel))
        try:
            if context is None:  # the identity went away since the caller checked
                raise e2e.PeerRejected("this agent has no end-to-end certificate any more")
            secured = await e2e.secure(
                transport, splice.b, context, server_side=False,
                server_hostname=identity.tunnel_hostname(assign.tunnel), initial=rest,
                expect_uri=assign.peer,
            )  # fmt: skip
        except (e2e.PeerRejected, e2e.E2eFailed) as exc:
            self.refused(assign.tunnel, exc, "reaching")
            transport.abort()
            client.reset(Reason.DENIED if isinstance(exc, e2e.PeerRejected) else Reason.RESET)
            return False
        except asyncio.CancelledError:
            client.reset(Reason.CLOSED)
            raise
        local = client.detach()
        if local is None:  # the local client left, or the direct path took it
            secured.reset(Reason.GONE)
            return False
        socket_transport, held, eof = local
        splice.attach(splice.b, secured)
        splice.attach(splice.a, socket_transport, e2e_commit.COMMIT + held, eof=eof)
        return True


TARGET_FAILURES = (
    Reason.TARGET_REFUSED, Reason.TARGET_UNREACHABLE, Reason.TARGET_TIMEOUT, Reason.DENIED,
)  # fmt: skip


async def chosen(secured: e2e.SecureTransport, name: str) -> tuple[bytes, bool] | None:
    """The exposing side of an end-to-end connection (relayed or direct) once its handshake is
    done: wait for the reaching side to commit to it (`e2e_commit.committed`); None, the
    connection reset, when it chose another path or left. Call it in the step `secure`
    returned in, and `carry_to_target` with what it returns."""
    try:
        return await e2e_commit.committed(secured)
    except e2e.E2eFailed as exc:
        log.debug("end-to-end connection not chosen", extra={"tunnel": name, "why": str(exc)})
        secured.reset(Reason.GONE)
        return None


async def carry_to_target(
    dialer: Dialer,
    spec: TunnelSpec,
    secured: e2e.SecureTransport,
    splice: Splice,
    first: tuple[bytes, bool],
) -> None:
    """Splice a chosen end-to-end connection (leg `b`, with the plaintext and FIN `chosen`
    returned) to `spec`'s target, dialled now (leg `a`); a target that cannot be had resets
    the connection with the reason."""
    splice.attach(splice.b, secured, first[0], eof=first[1])
    secured.resume_reading()
    try:
        await dialer.connect(spec.host, spec.port, splice.connector(splice.a))
    except DialError as exc:
        log.warning("cannot reach target", extra={"tunnel": spec.name, "error": exc.message})
        splice.reset(exc.reason)
