"""Header rewriting of the edge proxy, with no I/O: hop-by-hop removal and forwarding headers.

`Exchange` (exchange.py) calls `upstream_request_headers()` for each request it forwards and
`client_response_headers()` for each response head it relays.
"""

from __future__ import annotations

from collections.abc import Iterable

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
        b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization",
    }
)  # fmt: skip


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return tokens


def _without_hop_by_hop(headers: Iterable[tuple[bytes, bytes]]) -> tuple[Headers, set[bytes]]:
    listed = list(headers)
    tokens = _connection_tokens(listed)
    drop = HOP_BY_HOP | tokens
    return [(n, v) for n, v in listed if n.lower() not in drop], tokens


def upgrade_value(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The `Upgrade` value when the request asks to switch protocols (WebSocket), else None."""
    listed = list(headers)
    if b"upgrade" not in _connection_tokens(listed):
        return None
    return next((v for n, v in listed if n.lower() == b"upgrade"), None)


def host_and_accept(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str, str]:
    """A request's `Host` (routing) and `Accept` (HTML or JSON error pages), "" when absent."""
    host = accept = b""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"host":
            host = value
        elif lowered == b"accept":
            accept = value
    return host.decode("latin-1"), accept.decode("latin-1")


def upstream_request_headers(
    headers: Iterable[tuple[bytes, bytes]], *, client_ip: str, host: str
) -> Headers:
    """The request headers sent to the target: hop-by-hop removed, framing kept for http1,
    `X-Forwarded-*` and `Forwarded` added, and the upgrade pair for a WebSocket handshake. No
    `Connection` header otherwise: the channel is kept across requests (upstream.py), and the
    target decides keep-alive."""
    listed = list(headers)
    upgrade = upgrade_value(listed)
    chunked = any(n.lower() == b"transfer-encoding" and b"chunked" in v.lower() for n, v in listed)
    out, _ = _without_hop_by_hop(listed)
    prior_xff = [v for n, v in out if n.lower() == b"x-forwarded-for"]
    out = [(n, v) for n, v in out if n.lower() not in (b"x-forwarded-for", b"x-forwarded-proto",
                                                        b"x-forwarded-host")]  # fmt: skip
    if chunked:
        out.append((b"Transfer-Encoding", b"chunked"))
    xff = b", ".join([*prior_xff, client_ip.encode()])
    node = f'"[{client_ip}]"' if ":" in client_ip else client_ip
    out += [
        (b"X-Forwarded-For", xff),
        (b"X-Forwarded-Proto", b"http"),
        (b"X-Forwarded-Host", host.encode()),
        (b"Forwarded", f'for={node};host="{host}";proto=http'.encode()),
    ]
    if upgrade is not None:
        out += [(b"Connection", b"Upgrade"), (b"Upgrade", upgrade)]
    return out


def client_response_headers(
    headers: Iterable[tuple[bytes, bytes]], extra: Iterable[tuple[str, str]], *, switching: bool
) -> Headers:
    """Response headers for the client: hop-by-hop removed (http1 re-frames the body), policy
    headers added; a `101` keeps its `Connection`/`Upgrade` pair."""
    listed = list(headers)
    out, _ = _without_hop_by_hop(listed)
    if switching:
        out += [(n, v) for n, v in listed if n.lower() in (b"connection", b"upgrade")]
    out += [(n.encode(), v.encode()) for n, v in extra]
    return out
