"""Guest sessions: `portway join` connects with a share token instead of an agent token.

`Admission.admit` (`admission.py`) calls `Guests.admit()` for a hello whose token starts
with `pws_`; an admitted guest gets an ordinary `AgentSession` (a throw-away agent id, the
share's workspace) that may only reach the shared tunnel. `DataPlane._on_message` sends its
`reach_open`s through `Guests.reach()`, which checks the share again at connect time (revoked,
expired, rate limit), logs the connection in the share's access log, then lets `Pairing.reach`
pair it; `Pairing` reports the splice back through `track()`. `sweep()` (a data-plane
`Ticker`) re-reads the guests' shares every `CHECK_SECONDS` and ends the session and live
connections of any that stopped being usable.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy import select

from portway.domain import secrets
from portway.domain.clock import Clock
from portway.domain.ratelimit import SlidingWindow
from portway.domain.share_rules import share_status
from portway.hub.core.access_log import AccessLog
from portway.hub.dataplane.pairing import BIND_PREFIX
from portway.hub.dataplane.sessions import AgentSession
from portway.net.framed import ConnectionClosed
from portway.net.mux_bridge import StreamBridge
from portway.store import Database
from portway.store.models import Share
from portway.store.shares import Access
from portway.wire.codes import Reason, SessionCode
from portway.wire.control_messages import Goodbye, ReachOpen, ReachReject

CHECK_SECONDS = 0.5


@dataclass(eq=False)
class Guest:
    share_id: uuid.UUID
    workspace_id: uuid.UUID
    tunnel_id: uuid.UUID
    name: str
    rate_limit: int | None
    remote_addr: str = ""
    session: AgentSession | None = None
    splices: set[StreamBridge] = field(default_factory=set)


class Guests:
    def __init__(self, db: Database, clock: Clock, access_log: AccessLog) -> None:
        self._db = db
        self._clock = clock
        self._access_log = access_log
        self.by_session: dict[str, Guest] = {}
        self.limiter = SlidingWindow()

    def is_guest(self, session: AgentSession) -> bool:
        return session.id in self.by_session

    async def admit(self, token: str) -> Guest | tuple[SessionCode, str]:
        """The guest a share token stands for, or why it is refused."""
        share = await self._share(token=token)
        if share is None:
            return SessionCode.UNKNOWN_TOKEN, "the hub does not know this share link"
        status = share_status(share.revoked_at, share.expires_at, self._clock.now())
        if status != "active":
            return SessionCode.REVOKED, f"this share link was {status}"
        return Guest(
            share.id, share.workspace_id, share.tunnel_id, f"guest:{share.name}"[:100],
            share.rate_limit,
        )  # fmt: skip

    def attach(self, guest: Guest, session: AgentSession) -> None:
        guest.session = session
        self.by_session[session.id] = guest

    def forget(self, session: AgentSession) -> None:
        guest = self.by_session.pop(session.id, None)
        if guest is not None:
            for splice in list(guest.splices):
                splice.reset(Reason.CLOSED)

    def track(self, session: AgentSession, splice: StreamBridge) -> None:
        """Called by `Pairing.reach` for every bridge it makes for a guest session."""
        guest = self.by_session.get(session.id)
        if guest is not None:
            guest.splices = {s for s in guest.splices if s.open}
            guest.splices.add(splice)

    async def reach(
        self,
        session: AgentSession,
        request: ReachOpen,
        pair: Callable[[AgentSession, ReachOpen], Awaitable[None]],
    ) -> None:
        """Check the share at connect time, log the attempt, then pair (or reject)."""
        guest = self.by_session.get(session.id)
        if guest is None:
            return
        refusal = await self._check(guest, request)
        self._log(guest, refusal)
        if refusal is not None:
            with contextlib.suppress(ConnectionClosed):
                session.control.send(ReachReject(request.conn, *refusal))
            return
        await pair(session, request)

    async def _check(self, guest: Guest, request: ReachOpen) -> tuple[Reason, str] | None:
        if request.bind != f"{BIND_PREFIX}{guest.tunnel_id}":
            return Reason.DENIED, "a share link reaches only its own tunnel"
        share = await self._share(share_id=guest.share_id)
        now = self._clock.now()
        status = (
            "revoked" if share is None else share_status(share.revoked_at, share.expires_at, now)
        )
        if status != "active":
            return Reason.CLOSED, f"this share link was {status}"
        if guest.rate_limit is not None:
            decision = self.limiter.hit(str(guest.share_id), guest.rate_limit, now.timestamp())
            if not decision.allowed:
                return Reason.DENIED, (
                    f"more than {guest.rate_limit} connections in a minute; "
                    f"retry in {decision.retry_after} s"
                )
        return None

    def _log(self, guest: Guest, refusal: tuple[Reason, str] | None) -> None:
        self._access_log.add(Access(
            share_id=guest.share_id, workspace_id=guest.workspace_id, at=self._clock.now(),
            remote_addr=guest.remote_addr or "guest", method="CONNECT", path="",
            status=200 if refusal is None else 403, allowed=refusal is None,
            reason=None if refusal is None else refusal[0].name.lower(), user_agent="portway join",
        ))  # fmt: skip

    async def _share(
        self, *, token: str | None = None, share_id: uuid.UUID | None = None
    ) -> Share | None:
        async with self._db.session() as db:
            if token is not None:
                found = await db.scalar(
                    select(Share).where(Share.token_hash == secrets.digest(token))
                )
                if found is not None and not secrets.matches(token, found.token_hash):
                    found = None
            else:
                found = await db.get(Share, share_id)
            if found is not None:
                db.expunge(found)
            return found

    async def sweep(self) -> None:
        """End guests whose share was revoked, expired or deleted (a store read when there are
        guests at all)."""
        if not self.by_session:
            return
        ids = {g.share_id for g in self.by_session.values()}
        async with self._db.session() as db:
            rows = (await db.scalars(select(Share).where(Share.id.in_(ids)))).all()
            usable = {
                s.id for s in rows
                if share_status(s.revoked_at, s.expires_at, self._clock.now()) == "active"
            }  # fmt: skip
        for guest in list(self.by_session.values()):
            if guest.share_id in usable or guest.session is None:
                continue
            session = guest.session
            with contextlib.suppress(ConnectionClosed):
                session.control.send(Goodbye(SessionCode.REVOKED, "this share link was revoked"))
            session.close()
            self.forget(session)
