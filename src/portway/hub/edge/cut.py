"""Cutting share traffic under way when its share stops being usable.

Policy is checked per request, so a revoked share refuses the next request; this module ends the
ones already running: a long download, a slow upload, a WebSocket relayed raw after its `101`.
An `EdgeConnection` (connection.py) is registered with `LiveShares.add()` under the share of the
exchange it runs, and under the share of the last request while its upstream lane is idle (so a
revoked share's idle channel is closed too); its `Conversation` says when that changes
(`Op.LIVE`), and `discard()` follows. The sweep, started and stopped by `Edge` (a `Ticker`),
wakes every `CHECK_SECONDS`; when share exchanges are live it asks `Router.unusable()` (one
store query for the set of shares in use) and calls `cut()` on each connection running an
exchange (or keeping an idle lane) of a share that was revoked, expired or deleted, or whose
tunnel is paused or gone. The bytes between sockets never wait for this and never touch the
store: the sweep is the only place the store is consulted. (Public-URL exchanges of a paused or
deleted tunnel are cut by the data plane through `Traffic.reset`, the way its TCP splices are.)
"""

from __future__ import annotations

import logging
import uuid
from typing import Protocol

from portway.hub.core.ticker import Ticker
from portway.hub.edge.router import Deny, Router

log = logging.getLogger("portway.hub.edge")

CHECK_SECONDS = 0.5


class Cuttable(Protocol):
    """What the sweep needs of a connection serving a share (`EdgeConnection`)."""

    def cut(self, why: Deny) -> None: ...


class LiveShares:
    def __init__(self, router: Router, interval: float = CHECK_SECONDS) -> None:
        self._router = router
        self.by_share: dict[uuid.UUID, set[Cuttable]] = {}
        self._ticker = Ticker(
            self.sweep,
            interval,
            name="portway-edge-shares",
            log=log,
            failure="checking live share traffic failed; retrying",
        )

    def add(self, share_id: uuid.UUID, exchange: Cuttable) -> None:
        self.by_share.setdefault(share_id, set()).add(exchange)

    def discard(self, share_id: uuid.UUID, exchange: Cuttable) -> None:
        live = self.by_share.get(share_id)
        if live is not None:
            live.discard(exchange)
            if not live:
                del self.by_share[share_id]

    def start(self) -> None:
        """Sweep every `interval` seconds (a no-op while no share exchange is live) until `stop()`;
        a failed sweep is logged and tried again on the next tick."""
        self._ticker.start()

    async def stop(self) -> None:
        await self._ticker.stop()

    async def sweep(self) -> int:
        """Cut every live exchange whose share a new request could no longer use; how many."""
        if not self.by_share:
            return 0
        unusable = await self._router.unusable(list(self.by_share))
        cut = 0
        for share_id, deny in unusable.items():
            for exchange in list(self.by_share.get(share_id, ())):
                exchange.cut(deny)
                cut += 1
        if cut:
            log.info("cut live share traffic", extra={"exchanges": cut})
        return cut
