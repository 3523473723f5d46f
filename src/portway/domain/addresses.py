"""Parsing of ``host:port`` strings and port ranges, shared by hub flags and tunnel targets."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from portway.errors import InvalidInput

MAX_HOST_LENGTH = 253


class AddressError(InvalidInput):
    """A host, port or range that cannot be used; the message says which part and why.

    Raised by the parsers here and `tunnel_rules.check_target_host`; the API's validators let
    it through to pydantic (a 422 naming the field), the hub's config and the CLI wrap it in a
    `ConfigError` naming the flag.
    """

    code = "invalid_address"


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url_host(self) -> str:
        """The host as it must appear in a URL (IPv6 in brackets)."""
        return f"[{self.host}]" if ":" in self.host else self.host


def parse_port(value: str | int, *, allow_zero: bool = False) -> int:
    """Parse a TCP/UDP port; 0 is only accepted for listeners that let the OS choose."""
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise AddressError(f"port must be a number, got {value!r}") from None
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise AddressError(f"port must be between {low} and 65535, got {port}")
    return port


def validate_host(host: str) -> str:
    """Check a hostname or IP literal (1-253 characters, no spaces or brackets)."""
    if not 1 <= len(host) <= MAX_HOST_LENGTH:
        raise AddressError(f"host must be 1-{MAX_HOST_LENGTH} characters")
    if any(ch.isspace() for ch in host) or any(ch in host for ch in "[]/@?#"):
        raise AddressError(f"host {host!r} contains characters a host cannot have")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise AddressError(f"host {host!r} is not a valid IPv6 address") from None
    return host


def parse_host_port(value: str, *, allow_zero_port: bool = False) -> HostPort:
    """Parse ``host:port`` or ``[v6]:port``."""
    text = value.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise AddressError(f"expected [IPv6]:port, got {value!r}")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise AddressError(f"[{host}] is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise AddressError(f"expected host:port, got {value!r}")
        if ":" in host:
            raise AddressError(f"write IPv6 addresses in brackets, like [::1]:5432; got {value!r}")
    return HostPort(validate_host(host), parse_port(port_text, allow_zero=allow_zero_port))


def parse_port_range(value: str) -> tuple[int, int]:
    """Parse ``low-high`` (inclusive) with ``low <= high``."""
    low_text, sep, high_text = value.strip().partition("-")
    if not sep:
        raise AddressError(f"expected a port range like 20000-20999, got {value!r}")
    low, high = parse_port(low_text), parse_port(high_text)
    if low > high:
        raise AddressError(f"port range {value!r} starts after it ends")
    return low, high


def client_url(scheme: str, bind_host: str, port: int) -> str:
    """The URL a client on this machine uses for a listener bound to `bind_host`.

    A wildcard bind (0.0.0.0, ::) is reachable on loopback, so that is what is shown.
    """
    return f"{scheme}://{HostPort(display_host(bind_host), port).url_host}:{port}"


def display_host(bind_host: str) -> str:
    """The address a local client dials for a listener bound to `bind_host` (wildcards map to
    loopback)."""
    wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 - mapping
    return wildcard.get(bind_host, bind_host)
