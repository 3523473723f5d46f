"""Sans-IO HTTP probe: `HEAD /` and the response head. Used plain (`http_probe`) and, by the
runner, inside a TLS connection it opened to tell https from some other TLS service."""

from __future__ import annotations

from portway.probe.protocols import Answer, Probe, first_line, not_this, tls_seen
from portway.probe.results import Detection

HEAD_LIMIT = 16 * 1024


def head_request(host: str) -> bytes:
    """A HEAD / any HTTP/1.1 server answers; `Connection: close` so it also ends the exchange."""
    return (
        f"HEAD / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portway-probe\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


def parse_head(data: bytes, eof: bool, *, protocol: str = "http") -> Answer | None:
    """A response head: status line and headers (the Server header is the version).

    A 400 to our well-formed request is also a sign of TLS: that is how nginx and Apache answer
    plain HTTP on their TLS port when the request is a HEAD (so the explaining body is left out).
    """
    if not data.startswith(b"HTTP/"[: len(data)]):
        return not_this(data)
    end = data.find(b"\r\n\r\n")
    if end < 0:
        end = data.find(b"\n\n")  # bare LF from sloppy servers
    if end < 0 and not eof and len(data) < HEAD_LIMIT:
        return None
    lines = data[: end if end >= 0 else len(data)].decode("latin-1").splitlines()
    parts = lines[0].split(" ", 2) if lines else []
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        return not_this(data)
    status = int(parts[1])
    server = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "server":
            server = first_line(value.encode("latin-1"), 100) or None
    label = "HTTPS" if protocol == "https" else "HTTP"
    detail = f"{label} {status}" + (f", {server}" if server else "")
    return Answer(
        Detection(protocol, version=server, detail=detail),
        tls_seen=protocol == "http" and (status == 400 or tls_seen(data)),
    )


def http_probe(host: str) -> Probe:
    """The plain HTTP probe, naming `host` in the Host header."""
    return Probe("http", head_request(host), parse_head)
