"""The reaching agent's direct path (`docs/protocol.md` §20): carry a local client straight to
the exposing agent's direct port when one of its candidates answers, the relay as fallback.

`StreamServing` (`agent.serving`) holds one `DirectPaths`. Every relayed end-to-end `assign` of
a reach brings the exposing agent's candidates and identity (`learn()`), so the first connection
to a tunnel is relayed and the next ones try direct first: `carry()` connects to the candidates
(the preferred one at once, each next one `STAGGER` later, as Happy Eyeballs does), sends
`direct_open` and runs the end-to-end handshake, and only then takes the local client's socket,
with the bytes it held, from the relay that may be racing it (`SocketStream.detach`: whichever
path completes its handshake first carries the client; the other is reset). The caller starts
the relay when `carry()` has not won within `HEAD_START`. A candidate that fails is left alone
for `RETRY_AFTER`, so a black-holed address costs one head start, not one per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from portway.agent.end_to_end import EndToEnd, Reporter
from portway.domain.addresses import AddressError, parse_host_port
from portway.net import e2e, e2e_commit, identity
from portway.net.mux_socket import SocketStream
from portway.net.splice import Splice
from portway.wire.assignment_messages import Assign, DirectOpen
from portway.wire.messages import encode

log = logging.getLogger("portway.agent.direct")

HEAD_START = 0.25  # the relay starts if the direct path has not won by then
STAGGER = 0.1  # between connection attempts to successive candidates
ATTEMPT_TIMEOUT = 3.0  # connect and handshake, per connection
RETRY_AFTER = 30.0  # a failed candidate is not tried again before this


@dataclass
class _Known:
    """What the hub last said about one tunnel's direct path."""

    candidates: tuple[str, ...]
    peer: str  # the exposing agent's identity URI
    preferred: str | None = None  # the candidate that won last


class DirectPaths:
    def __init__(self, e2e_state: EndToEnd, report: Reporter, *, enabled: bool = True) -> None:
        self.enabled = enabled
        """False for `portway reach --relay`: every connection is relayed."""
        self._e2e = e2e_state
        self._report = report
        self._known: dict[str, _Known] = {}
        self._failed: dict[str, float] = {}  # candidate -> monotonic time it may be tried again

    def learn(self, assign: Assign) -> None:
        """Take the candidates of a relayed reach's `assign` (none: the tunnel has no direct
        path now, and its new connections are relayed)."""
        if not assign.candidates or assign.peer is None:
            self._known.pop(assign.tunnel, None)
            return
        known = self._known.get(assign.tunnel)
        preferred = known.preferred if known and known.peer == assign.peer else None
        if preferred not in assign.candidates:
            preferred = None
        self._known[assign.tunnel] = _Known(assign.candidates, assign.peer, preferred)

    def usable(self, tunnel: str) -> bool:
        """Whether a new connection to `tunnel` should try the direct path first."""
        known = self._known.get(tunnel)
        return self.enabled and known is not None and bool(self._candidates(known))

    def _candidates(self, known: _Known) -> list[str]:
        now = time.monotonic()
        ready = [c for c in known.candidates if self._failed.get(c, 0.0) <= now]
        if known.preferred in ready:
            ready.remove(known.preferred)
            ready.insert(0, known.preferred)
        return ready

    async def carry(self, tunnel: str, conn: str, client: SocketStream) -> bool:
        """Carry `client` over a direct connection to `tunnel`'s exposing agent; whether it
        did (False: no candidate completed the handshake, or the relay took the client first)."""
        known = self._known.get(tunnel)
        context = self._e2e.client_context()
        if known is None or context is None:
            return False
        candidates = self._candidates(known)
        splice = Splice()
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT):
                transport, used = await _first_connected(candidates, self._failed)
                transport.write(encode(DirectOpen(tunnel, conn)))
                secured = await e2e.secure(
                    transport, splice.b, context, server_side=False,
                    server_hostname=identity.tunnel_hostname(tunnel), expect_uri=known.peer,
                )  # fmt: skip
        except (OSError, TimeoutError, e2e.PeerRejected, e2e.E2eFailed) as exc:
            for candidate in candidates:
                self._failed.setdefault(candidate, time.monotonic() + RETRY_AFTER)
            known.preferred = None
            log.info("no direct path", extra={"tunnel": tunnel, "error": str(exc) or repr(exc)})
            return False
        known.preferred = used
        self._failed.pop(used, None)
        local = client.detach()
        if local is None:  # the relay carries it, or it left
            secured.close()
            return False
        socket_transport, held, eof = local
        splice.attach(splice.b, secured)
        splice.attach(splice.a, socket_transport, e2e_commit.COMMIT + held, eof=eof)
        return True


async def _first_connected(
    candidates: list[str], failed: dict[str, float]
) -> tuple[asyncio.Transport, str]:
    """A TCP connection to the first of `candidates` that accepts, trying each next one
    `STAGGER` after the previous (or at once when it failed); the losers are closed. A candidate
    that refuses is noted in `failed`. Raises OSError when none accepts."""
    loop = asyncio.get_running_loop()
    attempts: dict[asyncio.Task[asyncio.Transport], str] = {}

    async def connect(candidate: str) -> asyncio.Transport:
        try:
            where = parse_host_port(candidate)
        except AddressError as exc:
            raise OSError(str(exc)) from None
        transport, _ = await loop.create_connection(asyncio.Protocol, where.host, where.port)
        return transport

    pending = list(candidates)
    last: BaseException = OSError("no direct candidate")
    try:
        while pending or attempts:
            if pending:
                candidate = pending.pop(0)
                attempts[asyncio.create_task(connect(candidate))] = candidate
            done, _ = await asyncio.wait(
                attempts, timeout=STAGGER if pending else None, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                candidate = attempts.pop(task)
                if task.exception() is None:
                    return task.result(), candidate
                last = task.exception() or last
                failed[candidate] = time.monotonic() + RETRY_AFTER
        raise last
    finally:
        for task in attempts:
            task.cancel()
            with contextlib.suppress(BaseException):
                transport = await task
                transport.close()
