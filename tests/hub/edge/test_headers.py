"""Header rewriting of the edge proxy and its error pages, with no I/O."""

from __future__ import annotations

from portway.hub.edge import headers as hdr
from portway.hub.edge.pages import error_page


def test_request_headers_drop_hop_by_hop_and_add_forwarding() -> None:
    out = hdr.upstream_request_headers(
        [
            (b"host", b"web.localhost:7081"), (b"connection", b"keep-alive, x-secret"),
            (b"x-secret", b"1"), (b"keep-alive", b"5"), (b"te", b"trailers"),
            (b"transfer-encoding", b"chunked"), (b"x-forwarded-for", b"10.0.0.1"),
            (b"accept", b"*/*"),
        ],
        client_ip="::1", host="web.localhost:7081",
    )  # fmt: skip
    names = [n.lower() for n, _ in out]
    assert b"x-secret" not in names and b"keep-alive" not in names and b"te" not in names
    assert dict(out)[b"Transfer-Encoding"] == b"chunked"
    assert dict(out)[b"X-Forwarded-For"] == b"10.0.0.1, ::1"
    assert dict(out)[b"Forwarded"] == b'for="[::1]";host="web.localhost:7081";proto=http'
    assert b"connection" not in names  # the channel is kept; the target decides keep-alive


def test_upgrade_requests_keep_the_upgrade_pair() -> None:
    request = [(b"connection", b"Upgrade"), (b"upgrade", b"websocket"), (b"host", b"h")]
    out = dict(hdr.upstream_request_headers(request, client_ip="127.0.0.1", host="h"))
    assert out[b"Connection"] == b"Upgrade" and out[b"Upgrade"] == b"websocket"
    response = hdr.client_response_headers(
        [(b"connection", b"close"), (b"content-length", b"3")], [("X-RateLimit-Limit", "5")],
        switching=False,
    )  # fmt: skip
    assert response == [(b"content-length", b"3"), (b"X-RateLimit-Limit", b"5")]


def test_error_pages_follow_accept() -> None:
    headers, body = error_page(404, "not_found", "<nope>", "application/json")
    assert dict(headers)["Content-Type"] == "application/json" and b'"not_found"' in body
    headers, body = error_page(404, "not_found", "<nope>", "text/html,*/*")
    assert b"&lt;nope&gt;" in body and dict(headers)["Content-Length"] == str(len(body))
