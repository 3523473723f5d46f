"""The hub process's lifecycle: store, migrations, bootstrap and the API listener in one loop.

`portway hub` (and `portway.testing`) call `Hub.start()`, then `Hub.stop()` on SIGINT/SIGTERM.
Later listeners (agent endpoint, edge, hub ports) are started and stopped here too.

Start-up order serves tunnels first: the data plane (agent endpoint, hub ports) and the edge
listen before the bootstrap, the background workers and the API, whose modules (alembic when the
schema is current, httpx, FastAPI, uvicorn) are imported only when they are needed, so agents
reconnecting to a restarted hub are served about a second after it is spawned.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import logging
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from portway.domain.addresses import HostPort
from portway.domain.clock import Clock
from portway.hub.bootstrap import Bootstrap, ensure_admin
from portway.hub.core.access_log import AccessLog
from portway.hub.core.config import HubConfig
from portway.hub.core.presence import AgentPresence
from portway.hub.dataplane.plane import DataPlane
from portway.hub.edge.listener import Edge
from portway.hub.edge.router import Router
from portway.hub.edge.timeouts import Timeouts
from portway.hub.reaper import Reaper
from portway.net.identity import HubIdentityCa
from portway.store import Database
from portway.store.schema import migrate_if_needed

if TYPE_CHECKING:
    import uvicorn

    from portway.hub.webhook_delivery import DeliverySettings, DeliveryWorker

log = logging.getLogger("portway.hub")

SHUTDOWN_GRACE_SECONDS = 3


def _embedded_server(config: uvicorn.Config) -> uvicorn.Server:
    """uvicorn without its own signal handling: the hub owns signals and decides when to stop."""
    import uvicorn

    class EmbeddedServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return EmbeddedServer(config)


def bind_tcp(address: HostPort) -> socket.socket:
    """A listening TCP socket on `address` (port 0 picks a free port)."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.host, address.port))
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Hub:
    def __init__(
        self,
        config: HubConfig,
        clock: Clock | None = None,
        deliveries: DeliverySettings | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or Clock()
        self.presence = AgentPresence()
        self.db: Database | None = None
        self.bootstrap: Bootstrap | None = None
        self._api_socket: socket.socket | None = None
        self._api_server: uvicorn.Server | None = None
        self._api_task: asyncio.Task[None] | None = None
        self._reaper: Reaper | None = None
        self._delivery_settings = deliveries
        self.webhooks: DeliveryWorker | None = None
        self._stopping: asyncio.Event | None = None
        self.dataplane: DataPlane | None = None
        self.edge: Edge | None = None
        self.access_log: AccessLog | None = None
        # Set when the store's event log moved (the data plane follows it): wakes webhooks.
        self._events_moved = asyncio.Event()
        self._edge_socket: socket.socket | None = None

    @property
    def api_address(self) -> HostPort:
        """Where the API really listens (the actual port when the config asked for port 0)."""
        assert self._api_socket is not None, "hub not started"
        host, port = self._api_socket.getsockname()[:2]
        return HostPort(host, port)

    @property
    def api_url(self) -> str:
        return self.config.api_url

    async def start(self) -> None:
        """Open the store, migrate it, start listening, bootstrap on first start.

        The data plane and the edge come first; the bootstrap, the background workers and the
        API follow. On failure everything already opened is closed again before the error
        propagates.
        """
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database.open(self.config.database_url)
        try:
            await migrate_if_needed(self.db)
            self._api_socket = bind_tcp(self.config.api_listen)
            self._edge_socket = bind_tcp(self.config.edge_listen)
            self.access_log = AccessLog(self.db)
            # The CA that certifies agents for end-to-end reach (the hub's own, as for the agent
            # port, even when an operator's certificate serves that port).
            identity_ca = await asyncio.to_thread(HubIdentityCa.load, self.config.data_dir / "tls")
            self.dataplane = DataPlane(
                self.config, self.db, self.clock, self.presence, self.access_log, identity_ca,
                events_moved=self._events_moved.set,
            )  # fmt: skip
            await self.dataplane.start()
            assert self.dataplane.endpoint is not None
            # From here on the config carries the real ports (port 0 means "any free port"),
            # so URLs the API hands out (join links, public URLs) are ones that work.
            self.config = dataclasses.replace(
                self.config,
                api_listen=self.api_address,
                agent_listen=HostPort(self.config.agent_listen.host, self.dataplane.endpoint.port),
                edge_listen=HostPort(
                    self.config.edge_listen.host, self._edge_socket.getsockname()[1]
                ),
            )
            await self._start_edge(self.dataplane, self._edge_socket)
            assert self.edge is not None
            log.info("data plane serving", extra={"agent_port": self.config.agent_listen.port})
            self.bootstrap = await ensure_admin(self.db, self.config.admin_key_file, self.clock)
            self._reaper = Reaper(self.db, self.clock)
            self._reaper.start()
            # Imported only now and in a worker thread, like the API below: httpx and the
            # delivery code are not needed to serve tunnels, and the loop keeps serving them.
            await asyncio.to_thread(importlib.import_module, "portway.hub.webhook_delivery")
            from portway.hub.webhook_delivery import DeliveryWorker

            self.webhooks = DeliveryWorker(
                self.db,
                self.clock,
                allow_private=self.config.webhooks_allow_private,
                settings=self._delivery_settings,
                wake=self._events_moved,
            )
            self.webhooks.start()
            await self._start_api(self.db, self.dataplane, self.edge, self._api_socket)
        except BaseException:
            await self.stop()
            raise
        log.info("hub started", extra={"api": self.api_url, "store": self.db.dialect})

    async def _start_api(
        self, db: Database, dataplane: DataPlane, edge: Edge, sock: socket.socket
    ) -> None:
        """The REST API on its bound socket, in this loop; returns once uvicorn has started."""
        config, self._stopping = await asyncio.to_thread(self._api_config, db, dataplane, edge)
        self._api_server = server = _embedded_server(config)
        self._api_task = task = asyncio.create_task(
            server.serve(sockets=[sock]), name="portway-api"
        )
        while not server.started:
            if task.done():
                await task  # re-raises the start-up failure
                raise RuntimeError("API server stopped during start-up")
            await asyncio.sleep(0.01)

    def _api_config(
        self, db: Database, dataplane: DataPlane, edge: Edge
    ) -> tuple[uvicorn.Config, asyncio.Event]:
        """Import and build the FastAPI app and its uvicorn config, in a worker thread.

        FastAPI, pydantic and the routers take a second or two to import and build; done on
        the loop, that would stall the data plane that already serves (agents reconnecting to
        a restarted hub). Returns the loaded config and the context's `stopping` event.
        """
        import uvicorn

        from portway.api.app import create_app
        from portway.api.context import ApiContext
        from portway.hub import egress  # httpx, as the API

        assert dataplane.endpoint is not None
        ctx = ApiContext(
            config=self.config,
            db=db,
            presence=self.presence,
            url_guard=egress.Guard(self.config.webhooks_allow_private),
            clock=self.clock,
            agent_endpoint=dataplane.endpoint,
            diagnostics=dataplane.diagnostics,
            revocations=edge.router.shares,
        )
        config = uvicorn.Config(
            create_app(ctx),
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
            server_header=False,
        )
        config.load()  # imports uvicorn's protocol modules here rather than in `serve()`
        return config, ctx.stopping

    async def _start_edge(self, dataplane: DataPlane, sock: socket.socket) -> None:
        """The HTTP edge on its bound socket, routing with the data plane's snapshot."""
        assert self.db is not None and self.access_log is not None
        plane = dataplane
        router = Router(self.db, self.clock, plane.table, self.config.public_domain)
        self.access_log.start()
        timeouts = Timeouts(
            head=self.config.edge_head_timeout,
            idle=self.config.edge_idle_timeout,
            body=self.config.edge_body_timeout,
        )
        self.edge = Edge(
            router, plane.channels, plane.traffic, self.clock, self.access_log, timeouts
        )
        await self.edge.start(sock)

    @property
    def edge_url(self) -> str:
        """The edge as visitors address it (public domain, real port)."""
        return f"http://{self.config.public_domain}:{self.config.edge_listen.port}"

    async def stop(self) -> None:
        """Stop listeners, let in-flight requests finish (bounded), then close the store."""
        if self.edge is not None:
            await self.edge.stop()
            self.edge = None
        if self._edge_socket is not None:
            self._edge_socket.close()
            self._edge_socket = None
        if self._stopping is not None:
            self._stopping.set()  # event streams end now instead of holding up the shutdown
        if self._api_server is not None and self._api_task is not None:
            self._api_server.should_exit = True
            try:
                await asyncio.wait_for(self._api_task, SHUTDOWN_GRACE_SECONDS + 1)
            except TimeoutError:
                self._api_server.force_exit = True
                self._api_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._api_task
            self._api_task = None
            self._api_server = None
        if self._api_socket is not None:
            self._api_socket.close()
            self._api_socket = None
        if self.dataplane is not None:
            await self.dataplane.stop()
            self.dataplane = None
        if self.access_log is not None:
            await self.access_log.stop()
            self.access_log = None
        if self._reaper is not None:
            await self._reaper.stop()
            self._reaper = None
        if self.webhooks is not None:
            await self.webhooks.stop()
            self.webhooks = None
        if self.db is not None:
            await self.db.close()
            self.db = None
