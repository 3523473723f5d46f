"""Which addresses outbound requests (webhooks) must never reach, unless the operator allows it.

A webhook URL is chosen by any API user; without this guard the hub would send requests into
its own network (loopback services, the cloud metadata endpoint, the private LAN). The check
is pure here; `portway.hub.egress` resolves host names and applies it.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def forbidden_reason(address: IPAddress) -> str | None:
    """Why `address` is off limits (loopback, private, ...), or None when it is public."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        # ::ffff:127.0.0.1 reaches 127.0.0.1.
        return forbidden_reason(mapped)
    checks = (
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (isinstance(address, ipaddress.IPv6Address) and address in _UNIQUE_LOCAL, "unique-local"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        (not address.is_global, "not globally routable"),
    )
    for hit, reason in checks:
        if hit:
            return reason
    return None


_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")


def parse_address(host: str) -> IPAddress | None:
    """`host` as an IP address when it is a literal (brackets allowed), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
