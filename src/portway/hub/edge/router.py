"""What a request on the edge is for, and whether share policy lets it through.

`Conversation` (conversation.py) calls `Router.decide_now()` once per request head, before any
upstream work, and its `EdgeConnection` awaits `Router.decide()` when that needs the store. It
answers either a `Forward` (tunnel to dial, path to send, headers to add) or a `Deny`
(an error page to send). Public URLs are resolved from the data plane's in-memory snapshot;
share tokens through `ShareCache` (share_cache.py: store rows reused for a second, dropped when
this hub revokes one), so a revoked or expired share stops working with its very next request.
Requests already under way are cut by `LiveShares` (cut.py), which asks `Router.unusable()`
about every share in use twice a second.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from portway.domain import paths
from portway.domain.clock import Clock
from portway.domain.ratelimit import SlidingWindow
from portway.domain.share_rules import share_status
from portway.hub.dataplane import routes
from portway.hub.edge.share_cache import MISS, ShareCache
from portway.store import Database
from portway.store.models import Share

SHARE_PREFIX = "/s/"


@dataclass(frozen=True, slots=True)
class ShareRef:
    """The share a request used, for the access log."""

    id: uuid.UUID
    workspace_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Forward:
    route: routes.Route
    target: str  # what to send upstream (share prefix stripped, query kept)
    headers: list[tuple[str, str]] = field(default_factory=list)  # added to the response
    share: ShareRef | None = None


@dataclass(frozen=True, slots=True)
class Deny:
    status: int
    code: str
    message: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    share: ShareRef | None = None


def host_slug(host: str, public_domain: str) -> str | None:
    """The slug of `<slug>.<public-domain>[:port]`, or None for any other host."""
    name = host.strip().lower()
    if name.startswith("["):
        return None
    name = name.rsplit(":", 1)[0] if ":" in name else name
    name = name.rstrip(".")
    suffix = "." + public_domain
    if not name.endswith(suffix):
        return None
    slug = name[: -len(suffix)]
    return slug if slug and "." not in slug else None


def split_share(target: str) -> tuple[str, str] | None:
    """(token, forwarded target) for `/s/<token>/<rest>?q`; the target keeps the query."""
    if not target.startswith(SHARE_PREFIX):
        return None
    rest = target[len(SHARE_PREFIX) :]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    token, tail = rest[:cut], rest[cut:]
    return token, tail


class Router:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        table: routes.RouteTable,
        public_domain: str,
    ) -> None:
        self._db = db
        self._clock = clock
        self._table = table
        self._domain = public_domain
        self.limiter = SlidingWindow()
        self.shares = ShareCache(db)

    def decide_now(self, method: str, target: str, host: str) -> Forward | Deny | None:
        """`decide()` without waiting: None when the answer needs the store (a share row the
        cache does not hold). `EdgeConnection` tries this first and needs no task when it
        answers."""
        shared = split_share(target)
        if shared is not None:
            share = self.shares.cached(shared[0])
            return None if share is MISS else self._share(method, *shared, share)
        slug = host_slug(host, self._domain)
        route = None if slug is None else self._table.snapshot.web.get(slug)
        if route is None:
            return Deny(404, "not_found", f"no public tunnel answers at {host or 'this host'}")
        if route.paused:
            return Deny(503, "tunnel_paused", f"tunnel {route.name} is paused")
        return Forward(route, target)

    async def decide(self, method: str, target: str, host: str) -> Forward | Deny:
        """Route one request head and apply share policy; see the module docstring."""
        decision = self.decide_now(method, target, host)
        if decision is not None:
            return decision
        token, rest = split_share(target) or ("", "")
        return self._share(method, token, rest, await self.shares.get(token))

    def _share(  # noqa: PLR0911
        self, method: str, token: str, rest: str, share: Share | None
    ) -> Forward | Deny:
        now = self._clock.now()
        if share is None:
            return Deny(404, "share_not_found", "this share link does not exist")
        ref = ShareRef(share.id, share.workspace_id)
        status = share_status(share.revoked_at, share.expires_at, now)
        if status != "active":
            return _stale(status, ref)
        route = self._table.snapshot.routes.get(share.tunnel_id)
        if route is None:
            return _gone(ref)
        if rest == "" or rest.startswith("?"):
            location = f"{SHARE_PREFIX}{token}/{rest}"
            return Deny(308, "redirect", "moved", [("Location", location)], share=ref)
        limit_headers: list[tuple[str, str]] = []
        if share.rate_limit is not None:
            decision = self.limiter.hit(str(share.id), share.rate_limit, _seconds(now))
            limit_headers = decision.headers()
            if not decision.allowed:
                headers = [*limit_headers, ("Retry-After", str(decision.retry_after))]
                message = f"more than {share.rate_limit} requests in a minute"
                return Deny(429, "rate_limited", message, headers, share=ref)
        if route.paused:
            return _paused(route, ref, limit_headers)
        methods = share.allowed_methods
        if methods is not None and method.upper() not in methods:
            allow = [*limit_headers, ("Allow", ", ".join(methods))]
            return Deny(405, "method_not_allowed", f"{method} is not allowed", allow, ref)
        if not paths.allowed(rest, share.allowed_paths):
            return Deny(403, "path_not_allowed", "this path is not shared", limit_headers, ref)
        return Forward(route, rest, limit_headers, ref)

    async def unusable(self, share_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Deny]:
        """The shares among `share_ids` a new request could no longer use, each with the answer
        it would get: revoked or expired (410), deleted with its tunnel (404), tunnel paused
        (503). One store query for the whole set; `LiveShares.sweep` calls it every 0.5 s
        while share traffic is under way."""
        now = self._clock.now()
        async with self._db.session() as session:
            rows = (
                await session.execute(
                    select(
                        Share.id, Share.workspace_id, Share.tunnel_id, Share.revoked_at,
                        Share.expires_at,
                    ).where(Share.id.in_(list(share_ids)))
                )
            ).all()  # fmt: skip
        found = {row.id: row for row in rows}
        snapshot = self._table.snapshot
        out: dict[uuid.UUID, Deny] = {}
        for share_id in share_ids:
            row = found.get(share_id)
            if row is None:
                out[share_id] = _gone(None)
                continue
            ref = ShareRef(row.id, row.workspace_id)
            status = share_status(row.revoked_at, row.expires_at, now)
            route = snapshot.routes.get(row.tunnel_id)
            if status != "active":
                out[share_id] = _stale(status, ref)
            elif route is None:
                out[share_id] = _gone(ref)
            elif route.paused:
                out[share_id] = _paused(route, ref, [])
        return out


def _stale(status: str, ref: ShareRef | None) -> Deny:
    return Deny(410, f"share_{status}", f"this share link was {status}", share=ref)


def _gone(ref: ShareRef | None) -> Deny:
    return Deny(404, "share_not_found", "the shared tunnel no longer exists", share=ref)


def _paused(route: routes.Route, ref: ShareRef, headers: list[tuple[str, str]]) -> Deny:
    return Deny(503, "tunnel_paused", f"tunnel {route.name} is paused", headers, ref)


def _seconds(now: datetime) -> float:
    return now.timestamp()
