"""Secrets shown once and stored only as hashes: API keys, agent tokens, share tokens.

Each is 256 random bits, base64url-encoded behind a short kind prefix so a leaked value is easy
to recognise (and to scan for). The store keeps ``sha256(secret)``; lookups go by that hash and
the final comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

API_KEY_PREFIX = "pw_"
AGENT_TOKEN_PREFIX = "pwa_"  # noqa: S105 - a prefix, not a secret
SHARE_TOKEN_PREFIX = "pws_"  # noqa: S105

# How much of a secret listings may show: enough to tell keys apart, far too little to guess.
VISIBLE_CHARS = 8


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    """A freshly generated secret: `value` goes to the user once, `digest` to the store."""

    value: str
    digest: str

    @property
    def visible_prefix(self) -> str:
        return visible_prefix(self.value)


def issue(prefix: str) -> IssuedSecret:
    """Generate a new 256-bit secret with `prefix`; callers store `digest` and show `value` once."""
    raw = secrets.token_bytes(32)
    value = prefix + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    return IssuedSecret(value=value, digest=digest(value))


def digest(value: str) -> str:
    """Hex SHA-256 of a presented secret, the form the store indexes."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def matches(value: str, stored_digest: str) -> bool:
    """Constant-time check of a presented secret against a stored digest."""
    return hmac.compare_digest(digest(value), stored_digest)


def visible_prefix(value: str) -> str:
    """The part of a secret safe to list: its kind prefix and a few characters."""
    head, _, rest = value.partition("_")
    return f"{head}_{rest[:VISIBLE_CHARS]}"
