"""TLS for the agent port: the hub's own CA, its server context, and agents' pinned client context.

On first start the hub calls :func:`ensure_hub_certificates` on a directory of its data dir: it
creates a CA and a server certificate signed by it and prints the CA's SHA-256 fingerprint.
Agents store that fingerprint (the *pin*) and the CA certificate in their profile and connect with
:func:`client_context`, which trusts that CA and nothing else, after checking its fingerprint.
Rotating the server certificate (it is renewed when close to expiry) therefore needs no agent
change; only a new CA does.

TLS session resumption: asyncio has no parameter to pass a saved session to a new connection, so
:class:`PinnedClientContext` supplies it itself in ``wrap_bio`` (which asyncio and uvloop both
call for every client connection) from the TLS 1.3 ticket saved by :func:`remember_session`.
Later connections to the same hub therefore resume instead of redoing the full handshake. Reuse
one context per hub for this to work.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from portway.errors import InvalidInput

DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1", "::1")
CA_VALIDITY = datetime.timedelta(days=3650)
SERVER_VALIDITY = datetime.timedelta(days=397)
RENEW_BEFORE = datetime.timedelta(days=30)


class PinMismatch(InvalidInput):
    """The CA certificate given to :func:`client_context` does not have the pinned fingerprint.

    Raised by :func:`client_context` (an agent's session, `portway doctor`): the saved CA and
    pin disagree, so nothing is trusted.
    """

    code = "pin_mismatch"


@dataclass(frozen=True, slots=True)
class HubCertificates:
    """Paths written by :func:`ensure_hub_certificates` and the CA pin to show operators."""

    ca_cert: Path
    ca_key: Path
    cert: Path  # server certificate followed by the CA certificate
    key: Path
    fingerprint: str

    def ca_pem(self) -> bytes:
        """The CA certificate, as served to agents (``GET /v1/hub``) for them to pin."""
        return self.ca_cert.read_bytes()


def fingerprint(cert_pem: bytes | str) -> str:
    """SHA-256 of a certificate's DER form as colon-separated upper-case hex.

    Matches ``openssl x509 -noout -fingerprint -sha256``, so an operator can check it by hand.
    """
    data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
    digest = x509.load_pem_x509_certificate(data).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def normalize_fingerprint(text: str) -> str:
    """Canonical form of a user-typed pin: accepts any case, with or without colons, and an
    optional ``sha256:`` or ``SHA256 Fingerprint=`` prefix. Raises ``ValueError`` otherwise."""
    value = re.sub(r"^(sha256\s*fingerprint\s*=|sha256:)", "", text.strip(), flags=re.IGNORECASE)
    hexdigits = value.replace(":", "").strip()
    if not re.fullmatch(r"[0-9a-fA-F]{64}", hexdigits):
        raise ValueError(f"not a SHA-256 fingerprint: {text!r}")
    return ":".join(hexdigits[i : i + 2].upper() for i in range(0, 64, 2))


def _write(path: Path, data: bytes, mode: int) -> None:
    # Write to a sibling temporary file and rename, so a crash never leaves half a key behind,
    # and create it with its final mode, so a key is never readable by others even briefly.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(hostnames: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for name in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(names)


def _new_ca(now: datetime.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Portway hub CA")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _new_server_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    hostnames: tuple[str, ...],
    now: datetime.datetime,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + SERVER_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(hostnames), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _needs_new_server_cert(
    path: Path, hostnames: tuple[str, ...], ca_cert: x509.Certificate, now: datetime.datetime
) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return True
    return (
        cert.issuer != ca_cert.subject
        or cert.not_valid_after_utc - now < RENEW_BEFORE
        or sans != _san(hostnames)
    )


def ensure_ca(
    directory: Path, *, now: datetime.datetime | None = None
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The hub's CA in ``directory`` (``ca.pem``, ``ca-key.pem``), created on first use.

    Called by `ensure_hub_certificates` and by the identity CA that certifies agents
    (`net.identity.HubIdentityCa.load`), which needs the CA and nothing else.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
    if cert_path.exists() and key_path.exists():
        ca_cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not the EC key this hub generated")
        return loaded, ca_cert
    ca_key, ca_cert = _new_ca(now)
    _write(key_path, _key_pem(ca_key), 0o600)
    _write(cert_path, _pem(ca_cert), 0o644)
    return ca_key, ca_cert


def ensure_hub_certificates(
    directory: Path,
    *,
    hostnames: tuple[str, ...] = DEFAULT_HOSTNAMES,
    now: datetime.datetime | None = None,
) -> HubCertificates:
    """Create the hub's CA and server certificate in ``directory`` unless they exist; return them.

    Called by the hub at every start, before it listens on the agent port. The CA (and so the
    pin) is created once; the server certificate is re-issued by the same CA when it is missing,
    within 30 days of expiry, or was made for other ``hostnames``. Keys are written mode 0600,
    certificates 0644, the directory 0700.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    if not hostnames:
        raise ValueError("at least one hostname is needed")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths = HubCertificates(
        ca_cert=directory / "ca.pem",
        ca_key=directory / "ca-key.pem",
        cert=directory / "agent-endpoint.pem",
        key=directory / "agent-endpoint-key.pem",
        fingerprint="",
    )
    ca_key, ca_cert = ensure_ca(directory, now=now)
    if _needs_new_server_cert(paths.cert, hostnames, ca_cert, now) or not paths.key.exists():
        key, cert = _new_server_cert(ca_key, ca_cert, hostnames, now)
        _write(paths.key, _key_pem(key), 0o600)
        _write(paths.cert, _pem(cert) + _pem(ca_cert), 0o644)
    return HubCertificates(
        ca_cert=paths.ca_cert,
        ca_key=paths.ca_key,
        cert=paths.cert,
        key=paths.key,
        fingerprint=fingerprint(_pem(ca_cert)),
    )


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The agent port's server context (hub side): TLS 1.3, session tickets on (the default).

    Works with :func:`ensure_hub_certificates` output or an operator's own certificate and key.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(cert, key)
    return context


# Well inside a TLS 1.3 ticket's lifetime (the hub's OpenSSL default: 2 hours).
SESSION_REFRESH = 300.0


class PinnedClientContext(ssl.SSLContext):
    """Client context that resumes TLS sessions by itself; built by :func:`client_context`."""

    def __init__(self, protocol: int = ssl.PROTOCOL_TLS_CLIENT) -> None:
        # SSLContext.__new__ consumed ``protocol``; only our own state is set up here.
        self._sessions: dict[str | None, tuple[ssl.SSLSession, float]] = {}

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        if session is None and not server_side:
            key = (
                server_hostname.decode() if isinstance(server_hostname, bytes) else server_hostname
            )
            saved = self._sessions.get(key)
            session = saved[0] if saved is not None else None
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)

    def remember(self, ssl_object: ssl.SSLObject) -> None:
        """Keep the connection's session (with its ticket) for the next connections to the same
        server name.

        The hub's tickets are stateless, so one ticket resumes many connections: a connection
        that resumed keeps the saved one until it is `SESSION_REFRESH` seconds old. Reading
        `SSLObject.session` serializes the session, a cost that showed on every new connection.
        """
        saved = self._sessions.get(ssl_object.server_hostname)
        now = time.monotonic()
        if saved is not None and ssl_object.session_reused and now - saved[1] < SESSION_REFRESH:
            return
        # A TLS object of another transport layer (aiofastnet's) may expose no session.
        session = getattr(ssl_object, "session", None)
        if session is not None and session.has_ticket:
            self._sessions[ssl_object.server_hostname] = (session, now)


def client_context(ca_pem: bytes | str, pin: str, *, check_hostname: bool) -> PinnedClientContext:
    """The agent's context for the hub's agent port: trusts exactly ``ca_pem``, whose SHA-256
    fingerprint must equal ``pin`` (else :class:`PinMismatch`).

    ``check_hostname=False`` suits the hub's own CA, which signs nothing but that hub's
    certificate, so the pin alone identifies the hub whatever name or address it is reached by.
    Pass ``True`` when the pinned CA is one that also signs other servers (an operator's
    ``--agent-tls-cert`` from a shared CA). Build it once per hub and reuse it for every
    connection: sessions are resumed only within one context.
    """
    data = ca_pem.encode() if isinstance(ca_pem, str) else ca_pem
    if data.count(b"-----BEGIN CERTIFICATE-----") != 1:
        raise ValueError("the pinned CA must be exactly one PEM certificate")
    actual = fingerprint(data)
    if actual != normalize_fingerprint(pin):
        raise PinMismatch(f"CA certificate fingerprint {actual} does not match the pin {pin}")
    context = PinnedClientContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = check_hostname
    context.load_verify_locations(cadata=data.decode("ascii"))
    return context


def remember_session(transport: Any) -> None:
    """Save the TLS session of ``transport`` for resumption, if it uses a pinned client context.

    Call it on the first bytes read from the hub, by which time a TLS 1.3 server has sent its
    session tickets. A no-op for plain TCP (and for a stream, which has no TLS object of its own).
    """
    if transport is None:
        return
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is not None and isinstance(ssl_object.context, PinnedClientContext):
        ssl_object.context.remember(ssl_object)
