"""Hub ports: the public listeners of tunnels that expose a port on the hub itself.

`DataPlane` owns one `HubPorts`. After every snapshot reload it calls `sync()`, which opens a
`PublicPort` (TCP) or `UdpPort` for each public tunnel with a hub port and closes those whose
tunnel went away or moved; `Statuses` asks `error_of()` why a port could not be opened (the
tunnel's status becomes `error`); `DataPlane.stop()` calls `close()`.
"""

from __future__ import annotations

import uuid

from portway.hub.dataplane import routes
from portway.hub.dataplane.public import PublicPort, VisitorFactory
from portway.hub.dataplane.udp import UdpContext, UdpPort


class HubPorts:
    def __init__(self, host: str, visitor: VisitorFactory, udp: UdpContext) -> None:
        # Hub ports are public listeners, like the edge: `host` is where the edge binds.
        self._host = host
        self._visitor = visitor
        self._udp = udp
        self._ports: dict[uuid.UUID, PublicPort | UdpPort] = {}
        self._errors: dict[uuid.UUID, str] = {}

    def error_of(self, tunnel_id: uuid.UUID) -> str | None:
        """Why the tunnel's hub port is not listening, or None when it is (or has none)."""
        return self._errors.get(tunnel_id)

    async def sync(self, snapshot: routes.Snapshot) -> None:
        """Listen on exactly the hub ports `snapshot` asks for; a port that cannot be bound is
        remembered as an error and tried again on the next sync."""
        wanted = {
            r.id: r.hub_port
            for r in snapshot.routes.values()
            if r.public and r.hub_port is not None
        }
        for tunnel_id, port in list(self._ports.items()):
            if wanted.get(tunnel_id) != port.port:
                await port.close()
                del self._ports[tunnel_id]
        for tunnel_id in list(self._errors):
            if tunnel_id not in wanted:
                del self._errors[tunnel_id]
        for tunnel_id, hub_port in wanted.items():
            if tunnel_id in self._ports:
                continue
            listener: PublicPort | UdpPort
            if snapshot.routes[tunnel_id].protocol == "udp":
                listener = UdpPort(tunnel_id, self._host, hub_port, self._udp)
            else:
                listener = PublicPort(tunnel_id, self._host, hub_port, self._visitor)
            try:
                await listener.open()
            except OSError as exc:
                self._errors[tunnel_id] = (
                    f"cannot listen on hub port {hub_port}: {exc.strerror or exc}"
                )
                continue
            self._errors.pop(tunnel_id, None)
            self._ports[tunnel_id] = listener

    async def close(self) -> None:
        """Stop listening on every hub port (the hub is stopping)."""
        for port in list(self._ports.values()):
            await port.close()
        self._ports.clear()
