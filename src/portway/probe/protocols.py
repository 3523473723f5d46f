"""Sans-IO probes: the bytes each protocol's first words are, and parsers for the replies.

No asyncio here (the runner in runner.py does the I/O), so every parser can be fed split, partial
or hostile input byte by byte in tests. A parser has the shape
``parse(data, eof) -> Answer | None``: `data` is everything the target has sent on this connection
so far, `eof` says it will send no more (closed, or the step's timeout ran out); None means "need
more bytes" and is never returned when `eof` is true.

This module holds what every probe shares (`Answer`, `Probe`, hints, signs of TLS, banners) and
the server-first MySQL/MariaDB greeting; the client-first probes live in databases.py (PostgreSQL,
Redis), mongo.py and http.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from portway.probe.results import Detection

GREETING_WAIT = 0.3
"""How long the runner waits for a server that speaks first (MySQL, SSH, SMTP, ...)."""

BANNER_LIMIT = 512
"""A server-first banner is judged on its first line, or on this many bytes if it has none."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What one probe learnt.

    `detection` is set when the target answered as the probe's protocol. `tls_seen` says the reply
    shows the target speaks TLS (a TLS alert, "plain HTTP request was sent to HTTPS port"), which
    is what allows the runner to send a ClientHello at all. `upgrade_tls` is PostgreSQL's 'S': the
    TLS handshake follows on this same connection.
    """

    detection: Detection | None = None
    tls_seen: bool = False
    upgrade_tls: bool = False


NOTHING = Answer()

Parser = Callable[[bytes, bool], Answer | None]


@dataclass(frozen=True, slots=True)
class Probe:
    """One client-first probe: send `request` on a fresh connection, feed replies to `parse`."""

    protocol: str
    request: bytes
    parse: Parser


# --- hints -------------------------------------------------------------------------------------

PROTOCOLS = ("postgres", "mysql", "redis", "mongodb", "http", "https")

DATABASE_PORTS = {5432: "postgres", 3306: "mysql", 6379: "redis", 27017: "mongodb"}
"""Well-known plain database ports: never greeted with a TLS ClientHello on a hint alone."""

PORT_HINTS = {
    **DATABASE_PORTS,
    **dict.fromkeys((80, 3000, 5000, 8000, 8008, 8080, 8081, 8888, 9000), "http"),
    **dict.fromkeys((443, 8443, 9443), "https"),
}

_ALIASES = {
    "postgresql": "postgres", "pg": "postgres", "mariadb": "mysql", "mongo": "mongodb",
    "tls": "https",
}  # fmt: skip


def normalize_hint(hint: str | None) -> str | None:
    """A protocol name from PROTOCOLS, or None for "no idea" (auto, tcp, unknown names)."""
    if hint is None:
        return None
    name = hint.strip().lower()
    name = _ALIASES.get(name, name)
    return name if name in PROTOCOLS else None


def hint_from(protocol: str | None, port: int | None) -> str | None:
    """The hint for `detect()` from a tunnel's explicit protocol (None or "auto" when it has none)
    and its target port. Called by the agent before probing.

    An explicit protocol wins, except that https on a well-known database port becomes that
    database: a hint alone must never make us send a ClientHello to a plain database (PostgreSQL
    with TLS is still found, through its own SSLRequest).
    """
    name = normalize_hint(protocol)
    database = DATABASE_PORTS.get(port) if port is not None else None
    if name == "https" and database is not None:
        return database
    if name is not None:
        return name
    return PORT_HINTS.get(port) if port is not None else None


def probe_order(hint: str | None, available: list[str]) -> list[str]:
    """The client-first probes to run, hinted one first; "https" (a ClientHello) only if hinted."""
    rest = [name for name in available if name != hint]
    if hint == "https":
        return ["https", *rest]
    return [hint, *rest] if hint in available else rest


# --- signs of TLS, banners ---------------------------------------------------------------------

_PLAIN_TO_TLS_PHRASES = (
    b"plain HTTP request was sent to HTTPS port",  # nginx
    b"Client sent an HTTP request to an HTTPS server",  # Go's net/http
    b"speaking plain HTTP to an SSL-enabled server",  # Apache mod_ssl
)


def tls_seen(data: bytes) -> bool:
    """Whether a reply to plaintext shows a TLS server: a TLS alert record, or a web server's
    complaint that plain HTTP reached its TLS port."""
    if len(data) >= 2 and data[0] == 0x15 and data[1] == 0x03:
        return True
    return any(phrase in data for phrase in _PLAIN_TO_TLS_PHRASES)


def not_this(data: bytes) -> Answer:
    """The answer for a reply that is not the probe's protocol (maybe still a sign of TLS)."""
    return Answer(tls_seen=True) if tls_seen(data) else NOTHING


def first_line(data: bytes, limit: int = 120) -> str:
    """The first non-empty line of `data` with unprintable characters dropped, at most `limit`."""
    for raw in data.replace(b"\r", b"\n").split(b"\n"):
        text = "".join(ch for ch in raw.decode("latin-1") if ch.isprintable()).strip()
        if text:
            return text[:limit]
    return ""


# --- server-first: MySQL / MariaDB greeting, or any other banner --------------------------------

_CLIENT_SSL = 0x0800


def parse_greeting(data: bytes, eof: bool) -> Detection | None:
    """Judge what a server sent before we said anything: a MySQL/MariaDB handshake packet (or
    its error packet, e.g. "Host ... is not allowed to connect"), else a `tcp` banner."""
    if len(data) < 4:
        return _banner(data) if eof else None
    length, sequence = int.from_bytes(data[:3], "little"), data[3]
    if sequence == 0 and 0 < length < 1024:
        if len(data) < 4 + length:
            return _banner(data) if eof else None
        mysql = _mysql_packet(data[4 : 4 + length])
        if mysql is not None:
            return mysql
    if eof or b"\n" in data or len(data) >= BANNER_LIMIT:
        return _banner(data)
    return None


def _banner(data: bytes) -> Detection:
    line = first_line(data)
    return Detection("tcp", detail=line or f"server sent {len(data)} unprintable bytes first")


def _mysql_packet(payload: bytes) -> Detection | None:
    if payload[0] == 0xFF and len(payload) >= 3:
        message = payload[3:]
        if message[:1] == b"#":  # '#' + 5-character SQLSTATE, only sent by some versions here
            message = message[6:]
        reason = first_line(message)
        return Detection("mysql", detail=f"MySQL server refused the connection: {reason}")
    if payload[0] != 10:
        return None
    nul = payload.find(b"\x00", 1)
    if nul < 2 or len(payload) < nul + 1 + 4 + 8 + 1 + 2:
        return None
    raw = payload[1:nul]
    if not all(0x20 < byte < 0x7F for byte in raw):
        return None
    version = raw.decode("ascii")
    # MariaDB < 11 prefixes "5.5.5-" so that old clients do not mistake 10.x for MySQL 10.
    version = version.removeprefix("5.5.5-")
    capabilities = int.from_bytes(payload[nul + 1 + 4 + 8 + 1 : nul + 1 + 4 + 8 + 1 + 2], "little")
    product = "MariaDB" if "mariadb" in version.lower() else "MySQL"
    detail = f"{product} {version.split('-')[0]}"
    if capabilities & _CLIENT_SSL:
        detail += ", accepts TLS"
    return Detection("mysql", version=version, detail=detail)
