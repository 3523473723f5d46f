"""The SSRF guard for webhook URLs: resolve the host, refuse private addresses, pin the result.

The webhooks API calls `check` when a URL is set (422 on refusal); the delivery worker calls it
again before every attempt, because DNS may have changed since, and then connects to the very
address it checked (`Destination.url`) so a second lookup cannot be steered elsewhere.
Both skip the guard when the hub runs with `--webhooks-allow-private`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from portway.domain.netguard import forbidden_reason, parse_address
from portway.errors import InvalidInput, field_details

RESOLVE_TIMEOUT_SECONDS = 5.0
ALLOW_HINT = "start the hub with --webhooks-allow-private to allow private addresses"

Resolver = Callable[[str, int], Awaitable[list[str]]]


class EgressError(InvalidInput):
    """The URL may not be requested now; the message is meant for users.

    Raised by `check`: the webhooks API answers a 422 naming `url` with the error's code, the
    delivery worker records the message as the attempt's error.
    """

    code = "url_not_allowed"
    field = "url"

    def __init__(self, message: str) -> None:
        super().__init__(message, details=field_details("url", message, self.code))


class ForbiddenAddress(EgressError):
    """The host is, or resolves to, a loopback/private/link-local/... address."""


class Unresolvable(EgressError):
    """The host name does not resolve (or not in time)."""

    code = "url_unresolvable"


@dataclass(frozen=True, slots=True)
class Destination:
    """Where to send: `url` has the checked IP in place of the name when it was resolved."""

    url: str
    host_header: str | None = None
    sni_hostname: str | None = None


@dataclass(frozen=True, slots=True)
class Guard:
    """The guard as the webhooks API holds it (`portway.services.UrlGuard`), with the hub's
    `--webhooks-allow-private` setting; built by `hub/server.py`."""

    allow_private: bool

    async def check(self, url: str) -> None:
        await check(url, allow_private=self.allow_private)


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host` (TCP)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def check(
    url: str,
    *,
    allow_private: bool,
    resolve: Resolver = system_resolve,
    timeout: float = RESOLVE_TIMEOUT_SECONDS,  # noqa: ASYNC109
) -> Destination:
    """Where a request to `url` may go; raises `ForbiddenAddress` or `Unresolvable` otherwise.

    Every address of the host must be public: a name with one private address among public
    ones is refused, as the connection could use any of them.
    """
    if allow_private:
        return Destination(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    literal = parse_address(host)
    if literal is not None:
        reason = forbidden_reason(literal)
        if reason:
            raise ForbiddenAddress(f"{host} is a {reason} address; {ALLOW_HINT}")
        return Destination(url)
    try:
        async with asyncio.timeout(timeout):
            found = await resolve(host, port)
    except (OSError, TimeoutError, UnicodeError) as exc:
        detail = "timed out" if isinstance(exc, TimeoutError) else str(exc)
        raise Unresolvable(f"cannot resolve {host}: {detail}") from None
    addresses = [a for a in dict.fromkeys(parse_address(x) for x in found) if a is not None]
    if not addresses:
        raise Unresolvable(f"cannot resolve {host}: no addresses")
    for address in addresses:
        reason = forbidden_reason(address)
        if reason:
            raise ForbiddenAddress(
                f"{host} resolves to {address}, a {reason} address; {ALLOW_HINT}"
            )
    pinned = httpx.URL(url).copy_with(host=str(addresses[0]))
    authority = host if parts.port is None else f"{host}:{parts.port}"
    return Destination(
        url=str(pinned),
        host_header=authority,
        sni_hostname=host if parts.scheme == "https" else None,
    )
