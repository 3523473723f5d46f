"""The exposing agent's direct port (`docs/protocol.md` §20-21): reaching agents that can reach
this machine connect here instead of through the hub, and still only as the hub allows.

`AgentRuntime` opens one `DirectPort` for the process (`--direct-listen`, default every address
and a free port) when it serves tunnels with an end-to-end identity, and sends `candidates()` in
each `status`. A connection starts with one `direct_open {tunnel, conn}` frame and then the same
TLS handshake as a relayed end-to-end reach (§19), the exposing agent the server with the
tunnel's certificate. It is carried only when the tunnel is one this agent serves now and the
peer's certificate names an identity the hub lists for that tunnel (`desired_state.direct`,
kept in `DirectAccess`); then the target is dialled and spliced to it. Every new desired state
is checked against the connections already carried (`enforce()`): those no longer allowed are
reset at once, so pausing or deleting the tunnel, or the hub revoking the peer, cuts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterable

from portway.agent.assigned import ServedTunnels
from portway.agent.dialer import Dialer
from portway.agent.end_to_end import EndToEnd, carry_to_target, chosen
from portway.domain.addresses import HostPort
from portway.net import e2e, e2e_commit
from portway.net.framed import ConnectionClosed, FramedConnection
from portway.net.splice import Splice
from portway.wire.assignment_messages import DirectOpen
from portway.wire.codes import Reason
from portway.wire.control_messages import Counter, Counters, DirectGrant
from portway.wire.errors import ProtocolError

log = logging.getLogger("portway.agent.direct")

OPEN_TIMEOUT = 5.0  # for a connection's `direct_open` frame
GRANT_WAIT = 2.0
"""How long a peer the hub has not listed yet waits for the desired state that lists it: the hub
lists a peer before it tells that peer where to connect, but the two messages travel on
different connections."""
COUNTERS_SECONDS = 2.0  # as often as the hub writes its own counters
ANY = ("", "0.0.0.0", "::")  # noqa: S104 - the wildcards, to recognise them


class DirectAccess:
    """Tunnel id -> the identity URIs the hub lets reach it directly, from the last desired
    state. `AgentRuntime` calls `update()`; `DirectPort` asks `allows()`."""

    def __init__(self) -> None:
        self.peers: dict[str, frozenset[str]] = {}
        self._changed = asyncio.Event()

    def update(self, grants: Iterable[DirectGrant]) -> None:
        self.peers = {grant.tunnel: frozenset(grant.peers) for grant in grants}
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def allows(self, tunnel: str, uris: frozenset[str]) -> bool:
        return not self.peers.get(tunnel, frozenset()).isdisjoint(uris)

    async def wait_allowed(self, tunnel: str, uris: frozenset[str]) -> bool:
        """Whether a desired state lists one of `uris` for `tunnel`, waiting up to
        `GRANT_WAIT` for one that does."""
        if self.allows(tunnel, uris):
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(GRANT_WAIT):
                while not self.allows(tunnel, uris):
                    await self._changed.wait()
        return self.allows(tunnel, uris)


class DirectPort:
    def __init__(
        self,
        e2e_state: EndToEnd,
        tunnels: ServedTunnels,
        dialer: Dialer,
        *,
        advertise: tuple[str, ...] = (),
    ) -> None:
        self.access = DirectAccess()
        self.port = 0
        self._e2e = e2e_state
        self._tunnels = tunnels
        self._dialer = dialer
        self._advertise = advertise
        self._host = ""
        self._servers: list[asyncio.Server] = []
        self._carried: dict[Splice, tuple[str, frozenset[str]]] = {}  # -> (tunnel, peer URIs)
        self._tasks: set[asyncio.Task[None]] = set()
        self._offline: asyncio.TimerHandle | None = None
        # Per tunnel: connections carried and bytes of those that ended (towards the target,
        # from it), since the process started; and their values when the session started.
        self._opened: dict[str, int] = {}
        self._ended_bytes: dict[str, tuple[int, int]] = {}
        self._base: dict[str, tuple[int, int, int]] = {}
        self.activity = asyncio.Event()
        """Set when a connection is carried: `AgentRuntime` sends counters until all ended."""

    @property
    def carried(self) -> int:
        """Direct connections open now."""
        return len(self._carried)

    async def open(self, host: str = "", port: int = 0) -> bool:
        """Listen on `host`:`port` (every IPv4 and IPv6 address, on one port, when `host` is
        empty); whether it could (a port that cannot be had is logged, and reach to this agent
        stays relayed). IPv6 is skipped where the host has none."""
        self._host = host
        for index, address in enumerate([host] if host else ["0.0.0.0", "::"]):  # noqa: S104
            try:
                server = await self._listen(address, port)
            except OSError as exc:
                if index == 0:
                    log.warning(
                        "cannot open the direct port; reach stays relayed",
                        extra={"listen": f"{host or '*'}:{port}", "error": exc.strerror or exc},
                    )
                    return False
                continue
            self._servers.append(server)
            port = self.port = int(server.sockets[0].getsockname()[1])
        return True

    async def _listen(self, address: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        if ":" not in address:
            return await loop.create_server(self._accepted, address, port, backlog=1024)
        # IPv6 only, so that it takes the same port number as the IPv4 listener beside it.
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
        except OSError:
            sock.close()
            raise
        return await loop.create_server(self._accepted, sock=sock, backlog=1024)

    def candidates(self, toward_hub: str | None) -> tuple[str, ...]:
        """Where reaching agents may try this port, best first: the listen address when it is
        one, else the address this machine reaches the hub from and the host name's other
        addresses; then every `--advertise` address as given."""
        if not self.port:
            return self._advertise
        if self._host not in ANY:
            hosts = [self._host]
        else:
            hosts = [toward_hub] if toward_hub else []
            with contextlib.suppress(OSError):
                infos = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM)
                hosts += [str(info[4][0]) for info in infos if not _loopback(str(info[4][0]))]
        found = [str(HostPort(h, self.port)) for h in dict.fromkeys(hosts)]
        return tuple(dict.fromkeys([*found, *self._advertise]))

    def enforce(self) -> None:
        """Reset every carried connection the current desired state no longer allows."""
        for splice, (tunnel, uris) in list(self._carried.items()):
            if tunnel not in self._tunnels.specs:
                splice.reset(Reason.CLOSED)
            elif not self.access.allows(tunnel, uris):
                splice.reset(Reason.DENIED)

    def offline(self, dead_after: float) -> None:
        """The runtime lost its session: carried connections live on for `dead_after` (the
        heartbeat timeout), then end unless `online()` came first (§21: nobody vouches for
        them any more)."""
        if self._offline is None:
            self._offline = asyncio.get_running_loop().call_later(dead_after, self.cut_all)

    def online(self) -> None:
        """A session started: cancel `offline()`'s cut, and count from here (the connections
        still open count as opened in this session)."""
        if self._offline is not None:
            self._offline.cancel()
            self._offline = None
        self._base = {}
        for tunnel in self._opened:
            opened, live, bytes_in, bytes_out = self._totals(tunnel)
            self._base[tunnel] = (opened - live, bytes_in, bytes_out)

    def _totals(self, tunnel: str) -> tuple[int, int, int, int]:
        live = [s for s, (t, _) in self._carried.items() if t == tunnel]
        ended_in, ended_out = self._ended_bytes.get(tunnel, (0, 0))
        # Leg b is the peer: what it sent goes towards the target.
        bytes_in = ended_in + sum(s.bytes_b_to_a for s in live)
        bytes_out = ended_out + sum(s.bytes_a_to_b for s in live)
        return self._opened.get(tunnel, 0), len(live), bytes_in, bytes_out

    async def send_counters(self, send: Callable[[Counters], None]) -> None:
        """`send` this session's counters every `COUNTERS_SECONDS` while there is something
        new to tell; idle otherwise. Run by `AgentRuntime` as a task of each session."""
        sent: tuple[Counter, ...] = ()
        while True:
            await self.activity.wait()
            await asyncio.sleep(COUNTERS_SECONDS)
            counters = self.counters()
            if counters != sent:
                send(Counters(counters))
                sent = counters
            if not self._carried:
                self.activity.clear()

    def counters(self) -> tuple[Counter, ...]:
        """This session's cumulative counters of direct connections, per tunnel (`counters`
        to the hub, which counts what it does not carry from them)."""
        found = []
        for tunnel in sorted(self._opened):
            opened, live, bytes_in, bytes_out = self._totals(tunnel)
            base = self._base.get(tunnel, (0, 0, 0))
            found.append(
                Counter(tunnel, live, opened - base[0], bytes_in - base[1], bytes_out - base[2])
            )
        return tuple(found)

    def cut_all(self, reason: Reason = Reason.UNAVAILABLE) -> None:
        """Reset every carried connection (the hub has been out of reach too long to vouch
        for them)."""
        for splice in list(self._carried):
            splice.reset(reason)

    async def close(self) -> None:
        self.online()
        for server in self._servers:
            server.close()
        self.cut_all(Reason.CLOSED)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()

    # -- one connection --------------------------------------------------------------------------

    def _accepted(self) -> FramedConnection:
        conn = FramedConnection()
        task = asyncio.get_running_loop().create_task(self._serve(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return conn

    async def _serve(self, conn: FramedConnection) -> None:
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                first = await conn.recv()
        except (TimeoutError, ConnectionClosed, ProtocolError):
            conn.abort()
            return
        tunnel = first.tunnel if isinstance(first, DirectOpen) else ""
        spec = self._tunnels.specs.get(tunnel)
        context = self._e2e.server_context(tunnel)
        if spec is None or context is None:
            log.info("refused a direct connection", extra={"tunnel": tunnel or repr(first)})
            conn.abort()
            return
        transport, rest = conn.detach()
        try:
            secured = await e2e.secure(
                transport, e2e_commit.waiter(), context, server_side=True, initial=rest
            )
        except e2e.PeerRejected as exc:
            self._e2e.refused(tunnel, exc, "exposing")
            return
        except e2e.E2eFailed as exc:  # the reaching side left, or chose the relay
            log.info("direct handshake failed", extra={"tunnel": spec.name, "error": str(exc)})
            return
        uris = e2e.peer_uris(secured)
        if not await self.access.wait_allowed(tunnel, uris):
            names = ", ".join(sorted(uris)) or "no identity"
            self._e2e.refused(tunnel, f"a direct peer the hub did not name: {names}", "exposing")
            secured.reset(Reason.DENIED)
            return
        opening = await chosen(secured, spec.name)
        if opening is None:
            return
        splice = Splice(on_close=self._ended)
        self._carried[splice] = (tunnel, uris)  # from here a new desired state may cut it
        self._opened[tunnel] = self._opened.get(tunnel, 0) + 1
        self.activity.set()
        await carry_to_target(self._dialer, spec, secured, splice, opening)
        self.enforce()  # a desired state may have come while the target was dialled

    def _ended(self, splice: Splice) -> None:
        carried = self._carried.pop(splice, None)
        if carried is not None:
            ended_in, ended_out = self._ended_bytes.get(carried[0], (0, 0))
            self._ended_bytes[carried[0]] = (
                ended_in + splice.bytes_b_to_a,
                ended_out + splice.bytes_a_to_b,
            )


def _loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1"
