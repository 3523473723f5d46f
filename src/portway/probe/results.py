"""What a probe found out about a target: the public result types, shared by every probe module.

`detect()` (runner.py) returns a `Detection`; the agent stores it on the tunnel and the API shows
it. `tls_details()` turns the certificate a TLS handshake produced into the `TlsDetails` we show;
it never verifies anything, since a probe reports what is there, trusted or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

from cryptography import x509

from portway.errors import ProtocolViolation


class ProbeError(ProtocolViolation):
    """A reply that cannot be what the probe asked for (malformed BSON, absurd lengths, ...).

    Raised by the sans-IO parsers; the runner takes it as "not this protocol" and moves on, so it
    never escapes `detect()`.
    """

    code = "unexpected_reply"


@dataclass(frozen=True, slots=True)
class TlsDetails:
    subject: str  # RFC 4514, e.g. "CN=db.example.com"
    issuer: str
    not_after: str  # ISO 8601 UTC, e.g. "2027-01-01T00:00:00Z"
    version: str  # as OpenSSL names it, e.g. "TLSv1.3"


@dataclass(frozen=True, slots=True)
class Detection:
    protocol: str  # postgres, mysql, redis, mongodb, http, https or tcp
    version: str | None = None  # where the protocol tells it: MySQL greeting, Server header, ...
    tls: TlsDetails | None = None  # the target's certificate when it spoke TLS
    auth_required: bool = False  # e.g. Redis -NOAUTH
    detail: str = ""  # one short human line: "PostgreSQL, accepts TLS", "MariaDB 11.4.2", ...


def tls_details(der: bytes, version: str) -> TlsDetails:
    """Read subject, issuer and expiry from a DER certificate (`getpeercert(binary_form=True)`).

    Raises ProbeError when the bytes are not a certificate.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise ProbeError(f"the peer's certificate cannot be parsed: {exc}") from None
    not_after = cert.not_valid_after_utc.astimezone(UTC)
    return TlsDetails(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_after=not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        version=version,
    )
