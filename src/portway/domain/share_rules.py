"""Share rules with no I/O: policy normalisation, status, and the URL a share is handed out as.

The API normalises a share's policy with these functions before storing it, so the edge (issue
"shares data plane") can enforce exactly what is stored without re-validating it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Final, Literal, get_args

HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
ShareStatus = Literal["active", "revoked", "expired"]

HTTP_METHODS: Final = get_args(HttpMethod)
SHARE_STATUSES: Final = get_args(ShareStatus)

MAX_PATHS: Final = 50
MAX_PATH_LENGTH: Final = 1024
MAX_METHODS: Final = len(HTTP_METHODS)
MIN_RATE_LIMIT: Final = 1
MAX_RATE_LIMIT: Final = 1000
DEFAULT_EXPIRES_IN: Final = "24h"

# A path prefix is matched against the normalised, percent-decoded request path, so it must be
# in that form itself: no query, fragment, whitespace, control characters or dot segments.
_FORBIDDEN_IN_PATH = re.compile(r"[\x00-\x20\x7f?#\\]")
# Free text may span lines, but other control characters (NUL above all, which PostgreSQL
# cannot store) are refused.
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def check_description(value: str) -> str:
    if _CONTROL_BUT_LINES.search(value):
        raise ValueError("must not contain control characters other than tabs and line breaks")
    return value


def normalise_methods(values: Iterable[str]) -> list[str]:
    """Upper-case, validate and de-duplicate HTTP methods, keeping the caller's order."""
    out: list[str] = []
    for value in values:
        method = value.strip().upper()
        if method not in HTTP_METHODS:
            raise ValueError(f"{value!r} is not one of {', '.join(HTTP_METHODS)}")
        if method not in out:
            out.append(method)
    if not out:
        raise ValueError("list at least one method, or omit allowedMethods to allow them all")
    return out


def check_path_prefix(value: str) -> str:
    """Validate one `allowedPaths` entry: an absolute path prefix such as `/api/`."""
    if not value.startswith("/"):
        raise ValueError(f"path prefix {value[:40]!r} must start with '/'")
    if len(value) > MAX_PATH_LENGTH:
        raise ValueError(f"path prefix is longer than {MAX_PATH_LENGTH} characters")
    if _FORBIDDEN_IN_PATH.search(value):
        raise ValueError(
            f"path prefix {value[:40]!r} may not contain spaces, control characters, '?', '#' "
            "or '\\'"
        )
    if any(segment in (".", "..") for segment in value.split("/")):
        raise ValueError(f"path prefix {value[:40]!r} may not contain '.' or '..' segments")
    return value


def normalise_paths(values: Iterable[str]) -> list[str]:
    """Validate and de-duplicate path prefixes, keeping the caller's order."""
    out: list[str] = []
    for value in values:
        path = check_path_prefix(value)
        if path not in out:
            out.append(path)
    if not out:
        raise ValueError("list at least one path prefix, or omit allowedPaths to allow all paths")
    if len(out) > MAX_PATHS:
        raise ValueError(f"at most {MAX_PATHS} path prefixes")
    return out


def share_status(revoked_at: datetime | None, expires_at: datetime | None, now: datetime) -> str:
    """`revoked` wins over `expired`; a share is expired from its `expiresAt` instant on."""
    if revoked_at is not None:
        return "revoked"
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "active"


def uses_edge(protocol: str) -> bool:
    """HTTP(S) shares are opened in a browser through the edge; TCP/UDP ones with `portway join`."""
    return protocol in ("http", "https")


def share_url(
    token: str, protocol: str, *, public_domain: str, edge_port: int, api_url: str
) -> str:
    """The link handed to the outsider: the edge's `/s/<token>/` or the API's `/v1/join/<token>`.

    The edge is addressed by the hub's public domain (not its bind address, which is often
    0.0.0.0), as public tunnel URLs are.
    """
    if uses_edge(protocol):
        return f"http://{public_domain}:{edge_port}/s/{token}/"
    return f"{api_url.rstrip('/')}/v1/join/{token}"
