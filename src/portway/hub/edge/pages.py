"""Short error answers of the edge, as HTML or JSON depending on the client's `Accept`.

`portway.hub.edge.proxy` calls `error_response()` for every answer the edge gives itself (no
route, policy denials, agent away), with the policy headers to add; it returns the bytes framed
on the client connection.
"""

from __future__ import annotations

import html
import json

from portway.hub.edge import http1

REASONS = {
    400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 410: "Gone", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 502: "Bad Gateway", 503: "Service Unavailable",
    308: "Permanent Redirect",
}  # fmt: skip


def wants_json(accept: str) -> bool:
    """JSON when the client names JSON and not HTML (API clients); HTML for browsers and curl."""
    accept = accept.lower()
    return "json" in accept and "html" not in accept


def error_page(
    status: int, code: str, message: str, accept: str
) -> tuple[list[tuple[str, str]], bytes]:
    """Headers (content type and length) and body of an edge error answer."""
    if wants_json(accept):
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        ctype = "application/json"
    else:
        title = f"{status} {REASONS.get(status, 'Error')}"
        body = (
            f"<!doctype html><title>{title}</title><h1>{title}</h1>"
            f"<p>{html.escape(message)}</p><p><small>portway edge</small></p>\n"
        ).encode()
        ctype = "text/html; charset=utf-8"
    return [("Content-Type", ctype), ("Content-Length", str(len(body)))], body


def error_response(
    h: http1.ServerConnection, status: int, code: str, message: str, accept: str,
    extra: list[tuple[str, str]],
) -> bytes:  # fmt: skip
    """The bytes of a whole error answer on `h` (raises `http1.LocalProtocolError` when a
    response is already under way)."""
    page, body = error_page(status, code, message, accept)
    heads = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in [*page, *extra]]
    return b"".join((
        h.send(http1.Response(status, heads)),
        h.send(http1.Data(body)),
        h.send(http1.END),
    ))  # fmt: skip
