"""The control-session loop both ends run: receive messages, answer pings, detect a dead peer.

The hub's agent endpoint and the agent runtime each call `run_control` once per session with a
handler for the messages that are theirs to act on; heartbeats never reach the handler.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from portway.net.framed import ConnectionClosed, FramedConnection
from portway.wire.codes import SessionCode
from portway.wire.control_messages import Goodbye, Ping, Pong
from portway.wire.errors import ProtocolError
from portway.wire.heartbeat import Heartbeat, answer
from portway.wire.messages import Message

Handler = Callable[[Message], Awaitable[None]]


async def run_control(
    conn: FramedConnection, handle: Handler, *, interval: float, dead_after: float
) -> SessionCode:
    """Serve `conn` until it ends; returns why (the peer's goodbye reason, or ours).

    `handle` runs inline for each non-heartbeat message, so it must not block for long; work
    that waits (pairing a connection, dialling) belongs in a task of its own.
    """
    loop = asyncio.get_running_loop()
    beat = Heartbeat(interval=interval, timeout=dead_after, now=loop.time())
    try:
        while True:
            now = loop.time()
            if beat.expired(now):
                _say_goodbye(conn, SessionCode.HEARTBEAT_TIMEOUT, "no answer to pings")
                return SessionCode.HEARTBEAT_TIMEOUT
            if (ping := beat.poll(now)) is not None:
                conn.send(ping)
            try:
                async with asyncio.timeout(max(0.0, beat.next_wakeup() - loop.time())):
                    message = await conn.recv()
            except TimeoutError:
                continue
            beat.seen(loop.time())
            if isinstance(message, Ping):
                conn.send(answer(message))
            elif isinstance(message, Pong):
                beat.pong(message, loop.time())
            elif isinstance(message, Goodbye):
                conn.close()
                return message.reason
            else:
                await handle(message)
    except ConnectionClosed:
        return SessionCode.UNKNOWN
    except ProtocolError as exc:
        _say_goodbye(conn, SessionCode.PROTOCOL_ERROR, str(exc))
        return SessionCode.PROTOCOL_ERROR


def _say_goodbye(conn: FramedConnection, code: SessionCode, message: str) -> None:
    with contextlib.suppress(ConnectionClosed):
        conn.send(Goodbye(code, message))
    conn.close()
