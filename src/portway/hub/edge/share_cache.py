"""Share rows by token, kept in memory so a share request does not wait on the store.

`Router._share` (policy.py) asks `ShareCache.get()` for every share request. A row is reused
for `TTL` seconds, then read again: what changes a share's answer is the clock (expiry, checked
against the row on every request, so it is exact), its revocation, and its tunnel (paused or
deleted: the data plane's snapshot, also checked on every request). Revocation through this
hub's API calls `forget()` before its 204 goes out, so the very next request is refused; a
revocation made through another hub process on the same store is seen here within `TTL` (and
the requests under way are cut by `LiveShares` as usual). Unknown tokens are not remembered, so
guessing tokens cannot fill memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import select

from portway.domain import secrets
from portway.store import Database
from portway.store.models import Share

TTL = 1.0
MAX_ROWS = 10_000


class ShareCache:
    def __init__(
        self, db: Database, *, ttl: float = TTL, now: Callable[[], float] = time.monotonic
    ) -> None:
        self._db = db
        self._ttl = ttl
        self._now = now
        self._rows: dict[str, tuple[Share, float]] = {}

    async def get(self, token: str) -> Share | None:
        """The share `token` opens (a detached row), or None for a malformed or unknown token."""
        if not token.startswith(secrets.SHARE_TOKEN_PREFIX) or len(token) > 200:
            return None
        digest = secrets.digest(token)
        now = self._now()
        cached = self._rows.get(digest)
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        share = await self._load(token, digest)
        if share is None:
            self._rows.pop(digest, None)
            return None
        if len(self._rows) >= MAX_ROWS:
            self._rows.clear()  # rare: a hub with more live shares than this just reads more
        self._rows[digest] = (share, now)
        return share

    def forget(self) -> None:
        """Drop every remembered row: called when this process revoked a share."""
        self._rows.clear()

    async def _load(self, token: str, digest: str) -> Share | None:
        async with self._db.session() as session:
            share = await session.scalar(select(Share).where(Share.token_hash == digest))
            if share is None or not secrets.matches(token, share.token_hash):
                return None
            session.expunge(share)
            return share
