"""Share rows by token, kept in memory so a share request does not wait on the store.

`Router` (policy.py) asks `ShareCache.cached()` for every share request, and `get()` when the
row is not there. A row is reused for `TTL` seconds, then read again: what changes a share's
answer is the clock (expiry, checked against the row on every request, so it is exact), its
revocation, and its tunnel (paused or deleted: the data plane's snapshot, also checked on every
request). Revocation through this hub's API calls `forget()` before its 204 goes out, so the
very next request is refused; a revocation made through another hub process on the same store
is seen here within `TTL` (and the requests under way are cut by `LiveShares` as usual).
Unknown tokens are not remembered, so guessing tokens cannot fill memory.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable

from sqlalchemy import select

from portway.domain import secrets
from portway.store import Database
from portway.store.models import Share

TTL = 1.0
MAX_ROWS = 10_000


class Miss(enum.Enum):
    MISS = "miss"


MISS = Miss.MISS


class ShareCache:
    def __init__(
        self, db: Database, *, ttl: float = TTL, now: Callable[[], float] = time.monotonic
    ) -> None:
        self._db = db
        self._ttl = ttl
        self._now = now
        self._rows: dict[str, tuple[Share, float]] = {}
        self._loading: dict[str, asyncio.Future[Share | None]] = {}
        self._generation = 0  # moves on `forget()`

    def cached(self, token: str) -> Share | Miss | None:
        """`get()` without the store: `MISS` when the row must be read first."""
        if not token.startswith(secrets.SHARE_TOKEN_PREFIX) or len(token) > 200:
            return None
        cached = self._rows.get(secrets.digest(token))
        if cached is not None and self._now() - cached[1] < self._ttl:
            return cached[0]
        return MISS

    async def get(self, token: str) -> Share | None:
        """The share `token` opens (a detached row), or None for a malformed or unknown token.
        Requests that miss together share one read: when a row expires under load, the
        store sees one query, not one per request waiting."""
        found = self.cached(token)
        if found is not MISS:
            return found
        digest = secrets.digest(token)
        loading = self._loading.get(digest)
        if loading is None:
            loading = asyncio.ensure_future(self._refresh(token, digest, self._generation))
            self._loading[digest] = loading
            loading.add_done_callback(lambda done: self._settled(digest, done))
        return await asyncio.shield(loading)

    def forget(self) -> None:
        """Drop every remembered row: called when this process revoked a share. A read
        already under way answers its waiters but is not remembered."""
        self._rows.clear()
        self._loading.clear()
        self._generation += 1

    def _settled(self, digest: str, done: asyncio.Future[Share | None]) -> None:
        if self._loading.get(digest) is done:
            del self._loading[digest]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have left

    async def _refresh(self, token: str, digest: str, generation: int) -> Share | None:
        now = self._now()
        share = await self._load(token, digest)
        if generation != self._generation:
            return share
        if share is None:
            self._rows.pop(digest, None)
            return None
        if len(self._rows) >= MAX_ROWS:
            self._rows.clear()  # rare: a hub with more live shares than this just reads more
        self._rows[digest] = (share, now)
        return share

    async def _load(self, token: str, digest: str) -> Share | None:
        async with self._db.session() as session:
            share = await session.scalar(select(Share).where(Share.token_hash == digest))
            if share is None or not secrets.matches(token, share.token_hash):
                return None
            session.expunge(share)
            return share
