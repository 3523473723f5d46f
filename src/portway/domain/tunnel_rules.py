"""Tunnel rules with no I/O: protocols, generated names, public slugs, TTLs, connection strings.

The API validates requests with these functions and the store records what they decide; the
data plane later reads the same rules (`service_kind`, `connection_string`) so the CLI, the API
and `portway reach` all print the same thing for the same tunnel.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final, Literal, get_args
from urllib.parse import quote

from portway.domain.addresses import AddressError, validate_host
from portway.errors import InvalidInput

RequestedProtocol = Literal["auto", "tcp", "udp", "http", "https"]
Protocol = Literal["tcp", "udp", "http", "https"]
TunnelStatus = Literal["connecting", "active", "paused", "error"]
ServiceKind = Literal["postgres", "mysql", "redis", "mongodb", "http", "https", "tcp", "udp"]
ExpiresPreset = Literal["1h", "24h", "7d", "30d", "never"]

REQUESTED_PROTOCOLS: Final = get_args(RequestedProtocol)
PROTOCOLS: Final = get_args(Protocol)
STATUSES: Final = get_args(TunnelStatus)
SERVICE_KINDS: Final = get_args(ServiceKind)

# Ports whose service is well known; `auto` and generated names rely on them until the agent's
# handshake probe confirms or corrects the guess.
DATABASE_PORTS: Final[dict[int, ServiceKind]] = {
    5432: "postgres",
    3306: "mysql",
    6379: "redis",
    27017: "mongodb",
}
HTTP_PORTS: Final = frozenset({80, 3000, 5000, 8000, 8080})
HTTPS_PORTS: Final = frozenset({443, 8443})

EXPIRES_PRESETS: Final[dict[str, timedelta | None]] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "never": None,
}
MAX_TTL_SECONDS: Final = 365 * 24 * 3600

METADATA_MAX_BYTES: Final = 16 * 1024

SLUG_MAX_LENGTH: Final = 63  # one DNS label
SLUG_SUFFIX_LENGTH: Final = 6
NAME_SUFFIX_LENGTH: Final = 4
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
_NOT_DNS = re.compile(r"[^a-z0-9]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# `{auth}` is `user@` or empty; `{path}` is `/database` or empty (PostgreSQL defaults to
# `/postgres`, the database every cluster has).
CONNECTION_TEMPLATES: Final[dict[ServiceKind, str]] = {
    "postgres": "postgresql://{auth}localhost:{port}{path}",
    "mysql": "mysql://{auth}localhost:{port}{path}",
    "redis": "redis://{auth}localhost:{port}{path}",
    "mongodb": "mongodb://{auth}localhost:{port}{path}",
    "http": "http://localhost:{port}",
    "https": "https://localhost:{port}",
    "udp": "udp://localhost:{port}",
    "tcp": "tcp://localhost:{port}",
}


def check_target_host(host: str) -> str:
    """A target host: `validate_host` plus no control characters and valid Unicode.

    Raises `AddressError`; the agent later resolves the name exactly as stored. (Unpaired
    surrogates never get this far: pydantic refuses them in any `str` field.)
    """
    validate_host(host)
    if _CONTROL.search(host):
        raise AddressError("host may not contain control characters")
    return host


def resolve_protocol(requested: RequestedProtocol, target_port: int) -> Protocol:
    """The transport a tunnel uses: `requested`, or for `auto` a guess from the target port."""
    if requested != "auto":
        return requested
    if target_port in HTTPS_PORTS:
        return "https"
    if target_port in HTTP_PORTS:
        return "http"
    return "tcp"


def service_kind(protocol: str, target_port: int, detected: str | None = None) -> ServiceKind:
    """What runs behind a tunnel, for names and connection strings.

    `detected` (written by the agent's probe) wins when it is a known kind. Otherwise a TCP
    tunnel on a well-known database port is that database; UDP, HTTP and HTTPS are themselves.
    Unlike the product we replace, the *protocol* decides before the port: a UDP tunnel on
    5432 is `udp`, an HTTP tunnel on 6379 is `http`.
    """
    if detected in SERVICE_KINDS:
        return detected  # type: ignore[return-value]
    if protocol == "tcp":
        return DATABASE_PORTS.get(target_port, "tcp")
    if protocol in ("udp", "http", "https"):
        return protocol  # type: ignore[return-value]
    return "tcp"


def connection_string(
    kind: ServiceKind, local_port: int, metadata: Mapping[str, Any] | None = None
) -> str:
    """How a client on the reaching machine connects (`localhost`, the local port).

    Database kinds honour the tunnel's `metadata.username` and `metadata.database` (strings;
    anything else is ignored): `postgresql://ro@localhost:5432/app`. Both are percent-encoded so
    a name with `@` or `/` cannot change the URL's meaning.
    """
    meta = metadata or {}
    username, database = meta.get("username"), meta.get("database")
    auth = f"{quote(username, safe='')}@" if isinstance(username, str) and username else ""
    if isinstance(database, str | int) and not isinstance(database, bool) and str(database):
        path = "/" + quote(str(database), safe="")
    else:
        path = "/postgres" if kind == "postgres" else ""
    return CONNECTION_TEMPLATES[kind].format(port=local_port, auth=auth, path=path)


def _random_suffix(length: int) -> str:
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(length))


def generated_name(kind: ServiceKind) -> str:
    """A tunnel name for a request that gave none: `postgres-k3f9`. Callers retry on a clash."""
    return f"{kind}-{_random_suffix(NAME_SUFFIX_LENGTH)}"


def public_slug(name: str) -> str:
    """A hub-wide unique-ish DNS label for public URLs: the name made DNS-safe plus a suffix.

    Lower-case letters, digits and single dashes, at most 63 characters, never starting or
    ending with a dash. The store retries with a new suffix on the (unlikely) clash. The slug
    is fixed at creation: renaming a tunnel does not move its public URL.
    """
    base = _NOT_DNS.sub("-", name.lower()).strip("-")
    base = base[: SLUG_MAX_LENGTH - SLUG_SUFFIX_LENGTH - 1].rstrip("-") or "tunnel"
    return f"{base}-{_random_suffix(SLUG_SUFFIX_LENGTH)}"


def public_http_url(slug: str, public_domain: str, edge_port: int) -> str:
    return f"http://{slug}.{public_domain}:{edge_port}"


def public_url(
    *,
    protocol: str,
    public: bool,
    slug: str,
    hub_port: int | None,
    public_domain: str,
    edge_port: int,
) -> str | None:
    """Where outsiders reach a public tunnel: the edge URL for HTTP(S), `tcp|udp://` otherwise.

    None for a private tunnel (and for a public TCP/UDP one that somehow has no hub port).
    """
    if not public:
        return None
    if protocol in ("http", "https"):
        return public_http_url(slug, public_domain, edge_port)
    if hub_port is None:
        return None
    return f"{protocol}://{public_domain}:{hub_port}"


def uses_hub_port(protocol: str, public: bool) -> bool:
    """Only public TCP and UDP tunnels are given a port on the hub; HTTP goes through the edge."""
    return public and protocol in ("tcp", "udp")


class HubPortError(InvalidInput):
    """A requested hub port the tunnel cannot have; the message says why.

    Raised by `check_hub_port`, which `POST /v1/tunnels` runs: a 422 naming `hubPort`.
    """

    field = "hubPort"


def check_hub_port(port: int, port_range: tuple[int, int], protocol: str, public: bool) -> None:
    """Raise `HubPortError` unless `port` may be asked for by this tunnel."""
    if not public:
        raise HubPortError("hubPort is only for public tunnels; set public to true or omit it")
    if protocol not in ("tcp", "udp"):
        raise HubPortError(
            f"hubPort is only for TCP and UDP tunnels; a public {protocol} tunnel gets a URL"
        )
    low, high = port_range
    if not low <= port <= high:
        raise HubPortError(f"hubPort must be inside this hub's port range {low}-{high}")


def ttl(expires_in: str | int | None, default: str | None = None) -> timedelta | None:
    """The lifetime an `expiresIn` value asks for (None: never expires).

    Accepts a preset (`1h`, `24h`, `7d`, `30d`, `never`) or a whole number of seconds from 1
    to one year. Raises ValueError with a message fit for a 422.
    """
    value = default if expires_in is None else expires_in
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("expiresIn must be a preset or a number of seconds")
    if isinstance(value, int):
        if not 1 <= value <= MAX_TTL_SECONDS:
            raise ValueError(f"expiresIn seconds must be between 1 and {MAX_TTL_SECONDS}")
        return timedelta(seconds=value)
    if value not in EXPIRES_PRESETS:
        raise ValueError(
            f"expiresIn must be one of {', '.join(EXPIRES_PRESETS)}, or a number of seconds"
        )
    return EXPIRES_PRESETS[value]


def expires_at(now: datetime, lifetime: timedelta | None) -> datetime | None:
    return None if lifetime is None else now + lifetime


def check_metadata(value: dict[str, Any]) -> dict[str, Any]:
    """Refuse metadata that is not plain JSON or is larger than 16 KiB once serialized.

    The size is that of compact UTF-8 JSON (`separators=(",", ":")`), the form that is stored.
    """
    try:
        encoded = json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except (ValueError, TypeError):
        raise ValueError(
            "must be plain JSON: no NaN or Infinity, no unpaired surrogate characters"
        ) from None
    if len(encoded) > METADATA_MAX_BYTES:
        raise ValueError(
            f"is {len(encoded)} bytes serialized; the limit is {METADATA_MAX_BYTES} (16 KiB)"
        )
    return value
