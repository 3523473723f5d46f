"""Which of two racing end-to-end paths carries a connection (`docs/protocol.md` §20).

A reaching agent may run the handshake on a direct connection and on a relayed stream at once;
only the one that wins may make the exposing agent dial the target, or a server that takes one
client at a time (iperf3), or counts its connections (PostgreSQL), would see a client that never
speaks. So the reaching side's first plaintext byte is `COMMIT`, sent by the winner only (ahead
of the client's own bytes, in the same record), and the exposing side dials once it has read it
(`committed`): a loser is reset before that, and its target never hears of it.
"""

from __future__ import annotations

import asyncio

from portway.net.e2e import E2eFailed, SecureTransport

COMMIT = b"\x01"
COMMIT_TIMEOUT = 10.0  # as long as a handshake may take: the winner commits at once


class _Waiter(asyncio.Protocol):
    """Holds what the reaching side sends until `committed` hands it on: the first read wakes
    it and pauses reading, so what is held stays one read."""

    def __init__(self) -> None:
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: SecureTransport | None = None
        self.held: list[bytes] = []
        self.eof = False
        self.lost = False

    def data_received(self, data: bytes) -> None:
        self.held.append(data)
        if self.transport is not None:
            self.transport.pause_reading()
        if not self.done.done():
            self.done.set_result(None)

    def eof_received(self) -> bool:
        self.eof = True
        self._failed("the reaching side finished before it chose this path")
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._failed(f"the reaching side chose another path ({exc or 'closed'})")

    def _failed(self, why: str) -> None:
        if not self.done.done():
            self.done.set_exception(E2eFailed(why))


def waiter() -> asyncio.Protocol:
    """The protocol to hand `e2e.secure` on the exposing side; `committed` reads from it."""
    return _Waiter()


async def committed(
    secured: SecureTransport,
    timeout: float = COMMIT_TIMEOUT,  # noqa: ASYNC109 - the caller's budget
) -> tuple[bytes, bool]:
    """Wait until the reaching side commits to this path; the plaintext that came after
    `COMMIT` (the client's first bytes, maybe none) and whether its FIN came too. Raises
    `E2eFailed` (the path lost the race, the peer sent something else, or the stream is gone);
    the caller resets the stream and dials nothing.

    Call it in the step `secure` returned in. Reading stays paused on return: hand `secured` to
    its relay (`Splice.attach(..., eof=)`) with what this returned, then resume reading."""
    waiting = secured.get_protocol()
    assert isinstance(waiting, _Waiter), "secure() must be given waiter()"
    waiting.transport = secured
    try:
        async with asyncio.timeout(timeout):
            await waiting.done
    except TimeoutError:
        raise E2eFailed(f"the reaching side did not commit in {timeout:g} s") from None
    first = b"".join(waiting.held)
    if not first.startswith(COMMIT):
        raise E2eFailed("the reaching side spoke before it committed to this path")
    if waiting.lost:
        raise E2eFailed("the stream from the reaching side ended after it committed")
    return first[len(COMMIT) :], waiting.eof
