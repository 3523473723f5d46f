"""Dialling targets for the hub: policy first, then a TCP connection, with reasons that say why.

Used by the runtime when the hub assigns a data channel (`dial`) and to probe a tunnel's target
so its status can say "error: connection refused" before any visitor tries.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from portway.domain.dial_policy import TargetPolicy
from portway.errors import Unavailable
from portway.wire.codes import Reason

DIAL_TIMEOUT = 10.0
PROBE_TIMEOUT = 3.0


class DialError(Unavailable):
    """The target could not be dialled (denied by the policy, unresolvable, refused, timed out);
    `reason` is what the hub is told. Raised by every `Dialer` method."""

    code = "dial_failed"

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Dialer:
    policy: TargetPolicy

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses of `host` the policy allows, in resolver order; raises DialError."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise DialError(
                Reason.TARGET_UNREACHABLE, f"cannot resolve {host}: {exc.strerror}"
            ) from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        allowed = []
        refusal = ""
        for address in addresses:
            decision = self.policy.check(address, port)
            if decision.allowed:
                allowed.append(address)
            else:
                refusal = decision.reason
        if not allowed:
            raise DialError(
                Reason.DENIED, f"target {host}:{port} denied by agent policy: {refusal}"
            )
        return allowed

    async def connect(
        self,
        host: str,
        port: int,
        factory: Callable[[], asyncio.Protocol],
        *,
        timeout: float = DIAL_TIMEOUT,  # noqa: ASYNC109 - one budget across all addresses
        ssl_context: ssl.SSLContext | None = None,
    ) -> asyncio.Transport:
        """Connect to the first allowed address of `host` that answers; raises DialError.

        With `ssl_context` (https tunnels served to the HTTP edge) the connection is TLS, with
        `host` as the server name; a failed handshake counts as unreachable.
        """
        loop = asyncio.get_running_loop()
        last: DialError | None = None
        try:
            async with asyncio.timeout(timeout):
                for address in await self.addresses(host, port):
                    try:
                        transport, _ = await loop.create_connection(
                            factory, address, port, ssl=ssl_context,
                            server_hostname=host if ssl_context is not None else None,
                        )  # fmt: skip
                    except ConnectionRefusedError:
                        last = DialError(
                            Reason.TARGET_REFUSED, f"{host}:{port} refused the connection"
                        )
                    except OSError as exc:
                        last = DialError(
                            Reason.TARGET_UNREACHABLE,
                            f"cannot connect to {host}:{port}: {exc.strerror or exc}",
                        )
                    else:
                        return transport
        except TimeoutError:
            raise DialError(
                Reason.TARGET_TIMEOUT, f"{host}:{port} did not answer in time"
            ) from None
        assert last is not None
        raise last

    async def connect_udp(
        self, host: str, port: int, factory: Callable[[], asyncio.DatagramProtocol]
    ) -> asyncio.DatagramTransport:
        """A UDP socket connected to the first allowed address of `host` (UDP has no handshake:
        a closed port shows only later, as ICMP errors); raises DialError."""
        loop = asyncio.get_running_loop()
        last: DialError | None = None
        try:
            async with asyncio.timeout(DIAL_TIMEOUT):
                for address in await self.addresses(host, port):
                    try:
                        transport, _ = await loop.create_datagram_endpoint(
                            factory, remote_addr=(address, port)
                        )
                    except OSError as exc:
                        last = DialError(
                            Reason.TARGET_UNREACHABLE,
                            f"cannot open UDP to {host}:{port}: {exc.strerror or exc}",
                        )
                    else:
                        return transport
        except TimeoutError:
            raise DialError(
                Reason.TARGET_TIMEOUT, f"{host}:{port} did not resolve in time"
            ) from None
        assert last is not None
        raise last

    async def probe_udp(self, host: str, port: int) -> None:
        """A UDP target is fine when it resolves to an address the policy allows."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await self.addresses(host, port)
        except TimeoutError:
            raise DialError(Reason.TARGET_TIMEOUT, f"{host} did not resolve in time") from None

    async def probe(self, host: str, port: int) -> None:
        """Check that the target accepts a TCP connection (closed at once); raises DialError."""
        transport = await self.connect(host, port, asyncio.Protocol, timeout=PROBE_TIMEOUT)
        transport.close()
