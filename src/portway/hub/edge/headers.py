"""Header rewriting of the edge proxy, with no I/O: hop-by-hop removal and forwarding headers.

`Conversation` (conversation.py) calls `upstream_request_headers()` for each request it forwards and
`client_response_headers()` for each response head it relays.
"""

from __future__ import annotations

from collections.abc import Iterable

from portway.hub.edge.http1 import tokens

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
        b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization",
    }
)  # fmt: skip


# Dropped from a request on its way upstream: hop-by-hop, and the forwarding headers the edge
# sets itself (a client's `X-Forwarded-For` is kept, with the client's address appended).
_REPLACED = HOP_BY_HOP | {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}


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
    `Connection` header otherwise: the channel is kept across requests (a `Lane`), and the
    target decides keep-alive."""
    out: Headers = []
    listed: set[bytes] = set()  # the `Connection` header's tokens
    prior_xff: list[bytes] = []
    chunked = False
    upgrade: bytes | None = None
    for name, value in headers:  # one pass; a second only if `Connection` names more
        lowered = name.lower()
        if lowered not in _REPLACED:
            out.append((name, value))
        elif lowered == b"connection":
            listed |= tokens(value)
        elif lowered == b"transfer-encoding":
            chunked = chunked or b"chunked" in value.lower()
        elif lowered == b"upgrade":
            upgrade = value if upgrade is None else upgrade
        elif lowered == b"x-forwarded-for":
            prior_xff.append(value)
    named = listed - HOP_BY_HOP
    if named:
        out = [(n, v) for n, v in out if n.lower() not in named]
        if b"x-forwarded-for" in named:
            prior_xff = []
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
    if upgrade is not None and b"upgrade" in listed:
        out += [(b"Connection", b"Upgrade"), (b"Upgrade", upgrade)]
    return out


def client_response_headers(
    headers: Iterable[tuple[bytes, bytes]], extra: Iterable[tuple[str, str]], *, switching: bool
) -> Headers:
    """Response headers for the client: hop-by-hop removed (http1 re-frames the body), policy
    headers added; a `101` keeps its `Connection`/`Upgrade` pair."""
    out: Headers = []
    pair: Headers = []
    listed: set[bytes] = set()
    for name, value in headers:
        lowered = name.lower()
        if lowered not in HOP_BY_HOP:
            out.append((name, value))
            continue
        if lowered == b"connection":
            listed |= tokens(value)
        if switching and lowered in (b"connection", b"upgrade"):
            pair.append((name, value))
    named = listed - HOP_BY_HOP
    if named:
        out = [(n, v) for n, v in out if n.lower() not in named]
    out += pair
    out += [(n.encode(), v.encode()) for n, v in extra]
    return out
