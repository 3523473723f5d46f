"""An agent process's connection to the hub: one session over a few links (`agent.links`).

`portway up`, `portway expose` and `portway reach` build an `AgentRuntime` from `AgentSettings`
(`agent.settings`) and `await run()`; it reconnects with jittered backoff until `stop()` or a
refusal no retry can fix (`Refused`). This module is the session with the hub: the handshake,
the control stream (moved to another link when its own is lost), the desired state it brings
(tunnels served, binds held, target status reported back). What the runtime does with the
streams themselves, the hub's and its local reach clients', it inherits from `StreamServing`
(`agent.serving`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from portway import __version__
from portway.agent.dialer import Dialer
from portway.agent.direct_dial import DirectPaths
from portway.agent.direct_port import DirectPort
from portway.agent.end_to_end import EndToEnd
from portway.agent.links import CONNECT_TIMEOUT, LINK_ERRORS, HubLinks
from portway.agent.reach import LOCALHOST, ReachListener
from portway.agent.serving import StreamServing
from portway.agent.settings import AgentSettings
from portway.agent.targets import TargetWatch
from portway.agent.udp import UdpReachListener
from portway.domain.backoff import Backoff
from portway.errors import InvalidInput, Unauthorized
from portway.net import identity
from portway.net.control import run_control
from portway.net.framed import ConnectionClosed, FramedConnection
from portway.net.identity import Identity
from portway.wire.codes import Reason, SessionCode
from portway.wire.control_messages import (
    FEATURE_BINDS,
    FEATURE_DIRECT,
    FEATURE_E2E,
    FEATURE_EARLY_DATA,
    FEATURE_SERVE,
    BindSpec,
    BindStatus,
    ControlHello,
    Counters,
    DesiredState,
    Goodbye,
    ReachReject,
    Refused,
    Status,
    TargetStatus,
    Welcome,
)
from portway.wire.errors import ProtocolError
from portway.wire.messages import Message

log = logging.getLogger("portway.agent")

FATAL = {
    SessionCode.UNKNOWN_TOKEN,
    SessionCode.REVOKED,
    SessionCode.ROTATED,
    SessionCode.BAD_VERSION,
}
PROBE_INTERVAL = 15.0
HEARTBEAT_TIMEOUT = 15.0  # the hub's, until a welcome says


class AgentRefused(Unauthorized):
    """The hub refused this agent for a reason retrying cannot fix (revoked or rotated token)."""

    def __init__(self, code: SessionCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class AgentRuntime(StreamServing):
    def __init__(
        self,
        settings: AgentSettings,
        *,
        on_state: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_state = on_state or (lambda _event, _info: None)
        e2e = EndToEnd(self.on_state)
        direct = DirectPaths(e2e, self.on_state, enabled=settings.direct)
        super().__init__(Dialer(settings.policy), e2e, direct)
        self.direct_port: DirectPort | None = None
        """The direct port, when this agent serves tunnels end to end (protocol.md §20)."""
        self._held: tuple[Any, ...] = ()  # the tunnels and binds of the last desired state
        self.watch = TargetWatch(self.dialer, self.on_state)
        self.binds: dict[str, ReachListener | UdpReachListener] = {}
        self.local_binds: dict[str, ReachListener | UdpReachListener] = {}
        self.connected = asyncio.Event()
        self._ssl = settings.ssl_context()
        self._links: HubLinks | None = None
        self._revision = 0
        self._stop = asyncio.Event()
        self._backoff = Backoff()
        self._request = (
            identity.request_for(settings.identity_key) if settings.identity_key else None
        )

    # -- public ----------------------------------------------------------------------------------

    @property
    def identity(self) -> Identity | None:
        """This agent's certificate and the CA of its peers', from the hub's last welcome."""
        return self.e2e.identity

    async def add_reach(
        self,
        tunnel_id: str,
        label: str,
        port: int,
        addresses: tuple[str, ...] = LOCALHOST,
        protocol: str = "tcp",
        bind: str | None = None,
    ) -> int:
        """Listen locally for a tunnel this process reaches on its own; returns the bound port.

        `protocol` "udp" binds UDP sockets (one session per local client address); `bind`
        names the reach bind the hub resolves (default `tunnel:<id>`).
        """
        bind = bind or f"tunnel:{tunnel_id}"
        listener = self._listener(bind, tunnel_id, label, addresses, port, protocol)
        bound = await listener.open()
        self.local_binds[listener.bind] = listener
        return bound

    async def run(self) -> None:
        """Keep a session with the hub until `stop()`; raises AgentRefused on a fatal refusal."""
        await self._open_direct_port()
        while not self._stop.is_set():
            try:
                await self._session()
            except AgentRefused:
                if self.direct_port is not None:  # nobody may use this agent's tunnels now
                    self.direct_port.cut_all(Reason.DENIED)
                raise
            except LINK_ERRORS as exc:
                if not self._stop.is_set():
                    self.on_state("disconnected", {"error": str(exc) or type(exc).__name__})
            if self._stop.is_set():
                break
            delay = self._backoff.next()
            self.on_state("retrying", {"in": round(delay, 1)})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()

    async def stop(self) -> None:
        self._stop.set()
        if self._control is not None:
            with contextlib.suppress(ConnectionClosed):
                self._control.send(Goodbye(SessionCode.CLIENT_EXIT, "the agent is stopping"))
            self._control.close()
        if self._links is not None:
            self._links.close()
        for listener in [*self.binds.values(), *self.local_binds.values()]:
            await listener.close()
        if self.direct_port is not None:
            await self.direct_port.close()
        for _conn, (_bind, splice) in list(self._pending.items()):
            splice.reset(Reason.CLOSED)
        self._pending.clear()
        for task in [*self._tasks, *self._channel_tasks]:
            task.cancel()
        for task in [*self._tasks, *self._channel_tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- control session -------------------------------------------------------------------------

    async def _open_direct_port(self) -> None:
        """Listen for direct connections once per process, when this agent serves tunnels
        with an end-to-end identity."""
        settings = self.settings
        if settings.serve and settings.direct and settings.identity_key:
            port = DirectPort(self.e2e, self.tunnels, self.dialer, advertise=settings.advertise)
            self.direct_port = port if await port.open(*settings.direct_listen) else None

    def _send_counters(self, counters: Counters) -> None:
        if self._control is not None:
            with contextlib.suppress(ConnectionClosed):
                self._control.send(counters)

    def _candidates(self) -> tuple[str, ...] | None:
        """Where reaching agents may find the direct port, for `status`."""
        port, links = self.direct_port, self._links
        if port is None:
            return None
        return port.candidates(links.local_address() if links is not None else None)

    def _identity_from(self, welcome: Welcome) -> Identity | None:
        """This agent's identity from the hub's `welcome`, when it asked for one and the hub
        (one that knows end-to-end reach) answered; a certificate that does not fit is logged
        and not used: reach then runs relayed as before."""
        key = self.settings.identity_key
        if key is None or welcome.certificate is None or welcome.identity_ca is None:
            return None
        try:
            return identity.certified(key, welcome.certificate, welcome.identity_ca)
        except InvalidInput as exc:
            log.warning("ignoring the hub's certificate", extra={"error": str(exc)})
            return None

    def _tunnel_certificates(self, state: DesiredState) -> dict[str, str]:
        """The desired state's tunnel certificates that are for this agent's key, from its
        peers' CA; any other is logged and left out (that tunnel then has none)."""
        mine = self.identity
        kept: dict[str, str] = {}
        if mine is None:
            return kept
        for given in state.certificates or ():
            try:
                identity.certified(mine.key_pem, given.certificate, mine.peers_ca)
            except InvalidInput as exc:
                why = {"tunnel": given.tunnel, "error": str(exc)}
                log.warning("ignoring a tunnel certificate", extra=why)
                continue
            kept[given.tunnel] = given.certificate
        return kept

    def _hello(self) -> ControlHello:
        features: list[str] = [FEATURE_EARLY_DATA]  # `dial_stream` holds what follows assigns
        if self.settings.serve:
            features.append(FEATURE_SERVE)
        if self.settings.hold_binds:
            features.append(FEATURE_BINDS)
        if self._request is not None:
            features.append(FEATURE_E2E)
            if self.settings.direct:
                features.append(FEATURE_DIRECT)
        return ControlHello(
            token=self.settings.token, software=f"portway/{__version__}",
            hostname=socket.gethostname(), pid=os.getpid(), features=tuple(features),
            csr=self._request,
        )  # fmt: skip

    async def _session(self) -> None:
        links = self._links = HubLinks(
            self.settings.host, self.settings.port, self._ssl, self._on_stream
        )
        link, conn = await links.open(self._hello())
        dead_after = HEARTBEAT_TIMEOUT
        self._held = ()  # the session's first desired state is applied in full
        try:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    first = await conn.recv()
            except ConnectionClosed:
                if link.refused is not None:  # a version 1 hub: its frozen refusal
                    raise AgentRefused(
                        SessionCode.BAD_VERSION,
                        "the hub speaks protocol version 1; this agent speaks 2: "
                        f"upgrade the hub or use an agent of its release ({link.refused.message})",
                    ) from None
                raise
            if isinstance(first, Refused):
                if first.reason in FATAL:
                    raise AgentRefused(first.reason, first.message)
                raise ConnectionClosed(f"hub refused the session: {first.message}")
            if not isinstance(first, Welcome):
                raise ProtocolError(f"expected welcome, got {type(first).__name__}")
            self.e2e.identity = self._identity_from(first)
            dead_after = first.heartbeat_timeout
            if self.direct_port is not None:
                self.direct_port.online()
                counting = self.direct_port.send_counters(self._send_counters)
                self._spawn(counting, into=self._channel_tasks)
            link.start_heartbeat(first.heartbeat_interval, first.heartbeat_timeout)
            self._spawn(links.keep(first, self.settings.sessions), into=self._channel_tasks)
            self._backoff.reset()
            self.connected.set()
            self.on_state("connected", {"session": first.session, "agent": first.agent})
            current: FramedConnection | None = conn
            while current is not None:
                self._control = conn = current
                self._resend_pending(conn)
                code = await run_control(
                    conn, self._on_message,
                    interval=first.heartbeat_interval, dead_after=first.heartbeat_timeout,
                )  # fmt: skip
                # The connection under the control stream was lost: move it, keep the rest.
                lost = code is SessionCode.UNKNOWN and not self._stop.is_set()
                current = await links.move_control(first) if lost else None
            if code in FATAL:
                raise AgentRefused(
                    code, "the hub ended this agent's session: token no longer valid"
                )
            if not self._stop.is_set():
                self.on_state("disconnected", {"reason": code.value})
        finally:
            self.connected.clear()
            self._control = None
            if self.direct_port is not None and not self._stop.is_set():
                self.direct_port.offline(dead_after)
            conn.close()
            links.close()
            for task in list(self._channel_tasks):
                task.cancel()

    async def _on_message(self, message: Message) -> None:
        if isinstance(message, DesiredState):
            self._revision = message.revision
            self.tunnels.update(message.tunnels if self.settings.serve else ())
            self.e2e.certificates = self._tunnel_certificates(message)
            if self.direct_port is not None:
                self.direct_port.access.update(message.direct or ())
                self.direct_port.enforce()  # cut what the hub no longer allows
            self.on_state("desired", {"tunnels": len(message.tunnels), "binds": len(message.binds)})
            held, self._held = self._held, (message.tunnels, message.binds)
            if held == self._held:  # only certificates or direct grants changed: no checks
                self._report(message.revision, [], [], force=True)
                if self.settings.serve and message.tunnels:
                    self._spawn(self._probe_loop(message.revision))  # the old one ends
            else:
                self._spawn(self._apply(message))
        elif isinstance(message, ReachReject):
            pending = self._pending.pop(message.conn, None)
            if pending is not None:
                log.warning("hub refused a connection", extra={"reason": message.message})
                self.on_state("reach_rejected", {"message": message.message})
                pending[1].reset(message.reason)

    async def _apply(self, state: DesiredState) -> None:
        revision = state.revision
        bind_results = await self._sync_binds(state.binds) if self.settings.hold_binds else []
        targets = await asyncio.gather(
            *(self.watch.check(t) for t in state.tunnels if self.settings.serve)
        )
        self._report(revision, list(targets), bind_results, force=True)
        if self.settings.serve and state.tunnels:
            self._spawn(self._probe_loop(revision))

    async def _probe_loop(self, revision: int) -> None:
        while self._revision == revision and self._control is not None:
            await asyncio.sleep(PROBE_INTERVAL)
            if self._revision != revision:
                return
            specs = self.tunnels.specs.values()
            targets = await asyncio.gather(*(self.watch.check(t) for t in specs))
            self._report(revision, list(targets), [], force=False)

    def _report(
        self, revision: int, targets: list[TargetStatus], binds: list[BindStatus], *, force: bool
    ) -> None:
        changed = self.watch.worth_sending(targets)
        if (force or changed or binds) and self._control is not None:
            with contextlib.suppress(ConnectionClosed):
                self._control.send(
                    Status(
                        revision,
                        tuple(targets if force else changed),
                        tuple(binds),
                        candidates=self._candidates() if force else None,
                    )
                )

    async def _sync_binds(self, specs: tuple[BindSpec, ...]) -> list[BindStatus]:
        wanted = {spec.id: spec for spec in specs}
        for bind_id in [b for b in self.binds if b not in wanted]:
            await self.binds.pop(bind_id).close()
        results = []
        for spec in specs:
            listener = self.binds.get(spec.id)
            if listener is not None and listener.port == spec.port:
                results.append(BindStatus(spec.id, True, listener.port))
                continue
            if listener is not None:
                await listener.close()
            listener = self._listener(
                spec.id, spec.tunnel, spec.name, spec.addresses, spec.port, spec.protocol
            )
            try:
                port = await listener.open()
            except OSError as exc:
                results.append(
                    BindStatus(
                        spec.id,
                        False,
                        0,
                        f"cannot listen on port {spec.port}: {exc.strerror or exc}",
                    )
                )
                self.binds.pop(spec.id, None)
                continue
            self.binds[spec.id] = listener
            self.on_state("bound", {"tunnel": spec.name, "port": port})
            results.append(BindStatus(spec.id, True, port))
        return results
