"""What the data plane needs to know about tunnels and reach binds, read from the store.

Loaded in full at start and whenever the event log moves; the per-connection path reads only
these in-memory snapshots.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portway.store.models import Agent, Connection, Tunnel
from portway.wire.control_messages import BindSpec, Protocol, TunnelSpec

LOCAL_ADDRESSES = ("127.0.0.1", "::1")
DEFAULT_UDP_IDLE_TIMEOUT = 60.0
UDP_IDLE_KEY = "udpIdleTimeout"


def udp_idle_timeout(metadata: dict[str, Any] | None) -> float:
    """A tunnel's UDP idle timeout from its metadata: a positive number of seconds (at most a
    day), else the 60 s default. Read when the snapshot loads; applies to new sessions."""
    value = (metadata or {}).get(UDP_IDLE_KEY)
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 86400:
        return float(value)
    return DEFAULT_UDP_IDLE_TIMEOUT


@dataclass(frozen=True, slots=True)
class Route:
    id: uuid.UUID
    workspace_id: uuid.UUID
    agent_id: uuid.UUID
    name: str
    protocol: str
    host: str
    port: int
    public: bool
    hub_port: int | None
    paused: bool
    slug: str = ""  # the public host name's first label (HTTP edge)
    tls_verify: bool = True  # https: the agent verifies the target (metadata `tlsVerify`)
    e2e: bool = True  # reach is encrypted agent to agent (metadata `e2e`, protocol.md §19)
    udp_idle_timeout: float = DEFAULT_UDP_IDLE_TIMEOUT
    """Seconds a UDP session may stay silent before the hub ends it (metadata `udpIdleTimeout`)."""

    @property
    def wire_protocol(self) -> Protocol:
        return Protocol.UDP if self.protocol == "udp" else Protocol.TCP

    def spec(self) -> TunnelSpec:
        # The tunnel's own protocol (not the channel framing): the agent's probe starts there.
        return TunnelSpec(
            id=str(self.id), name=self.name, protocol=Protocol(self.protocol), host=self.host,
            port=self.port,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Bind:
    """A reach listener the hub asks an agent to hold (`POST /v1/tunnels/{id}/connect`)."""

    id: uuid.UUID
    tunnel_id: uuid.UUID
    agent_id: uuid.UUID
    port: int

    def spec(self, route: Route) -> BindSpec:
        return BindSpec(
            id=str(self.id), tunnel=str(self.tunnel_id), name=route.name,
            protocol=route.wire_protocol, addresses=LOCAL_ADDRESSES, port=self.port,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Snapshot:
    routes: dict[uuid.UUID, Route]
    binds: dict[uuid.UUID, Bind]
    agent_workspaces: dict[uuid.UUID, uuid.UUID]
    web: dict[str, Route] = field(init=False, repr=False, compare=False)  # public URLs by slug

    def __post_init__(self) -> None:
        # The edge looks a public URL's tunnel up on every request.
        web = {r.slug: r for r in self.routes.values()
               if r.public and r.protocol in ("http", "https")}  # fmt: skip
        object.__setattr__(self, "web", web)

    def tunnels_of(self, agent_id: uuid.UUID) -> list[Route]:
        return [r for r in self.routes.values() if r.agent_id == agent_id and not r.paused]

    def binds_of(self, agent_id: uuid.UUID) -> list[tuple[Bind, Route]]:
        return [
            (b, self.routes[b.tunnel_id])
            for b in self.binds.values()
            if b.agent_id == agent_id and b.tunnel_id in self.routes
        ]


EMPTY = Snapshot(routes={}, binds={}, agent_workspaces={})


class RouteTable:
    """The snapshot in force: replaced whole by the data plane's refresh, read by every part
    that routes a connection (pairing, UDP ports, statuses, diagnostics, the edge's router).

    One shared holder instead of a getter per part: a reader always sees the latest snapshot,
    and a snapshot itself never changes once built.
    """

    __slots__ = ("snapshot",)

    def __init__(self, snapshot: Snapshot = EMPTY) -> None:
        self.snapshot = snapshot

    def route(self, tunnel_id: uuid.UUID) -> Route | None:
        return self.snapshot.routes.get(tunnel_id)


async def load(session: AsyncSession) -> Snapshot:
    routes = {
        t.id: Route(
            id=t.id,
            workspace_id=t.workspace_id,
            agent_id=t.agent_id,
            name=t.name,
            protocol=t.protocol,
            host=t.target_host,
            port=t.target_port,
            public=t.public,
            hub_port=t.hub_port,
            paused=t.status == "paused",
            slug=t.slug,
            tls_verify=(t.meta or {}).get("tlsVerify") is not False,
            e2e=(t.meta or {}).get("e2e") is not False,
            udp_idle_timeout=udp_idle_timeout(t.meta),
        )
        for t in (await session.scalars(select(Tunnel))).all()
    }
    binds = {
        c.id: Bind(id=c.id, tunnel_id=c.tunnel_id, agent_id=c.agent_id, port=c.local_port)
        for c in (await session.scalars(select(Connection))).all()
    }
    rows = (await session.execute(select(Agent.id, Agent.workspace_id))).all()
    agents = dict(rows)
    return Snapshot(routes=routes, binds=binds, agent_workspaces=agents)
