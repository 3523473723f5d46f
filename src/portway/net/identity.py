"""Agent identities for end-to-end reach: key pairs on agents, certificates from the hub's CA.

The agent side (`agent.runtime`) makes its key once (`new_key`) and sends a request for it
(`request_for`) in every `control_hello`; the hub's admission checks it (`parse_request`) and
answers in `welcome` with a certificate its CA signs (`HubIdentityCa.issue`), naming the agent
and its workspace as URIs. Peers check those names after their TLS handshake
(`docs/protocol.md` sections 18 and 19). Sans-IO apart from reading the CA's files.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from portway.errors import InvalidInput
from portway.net import tls

CERTIFICATE_VALIDITY = datetime.timedelta(hours=24)
CLOCK_SKEW = datetime.timedelta(minutes=5)
TUNNEL_DOMAIN = "tunnel.portway.invalid"  # `.invalid` (RFC 6761): no resolver answers it


def agent_uri(agent_id: uuid.UUID | str) -> str:
    return f"urn:portway:agent:{agent_id}"


def workspace_uri(workspace_id: uuid.UUID | str) -> str:
    return f"urn:portway:workspace:{workspace_id}"


def share_uri(share_id: uuid.UUID | str) -> str:
    """A guest's name (`portway join`): the share it came in with, not an agent."""
    return f"urn:portway:share:{share_id}"


def tunnel_hostname(tunnel_id: uuid.UUID | str) -> str:
    """The name a reaching agent expects the exposing agent's tunnel certificate to carry."""
    return f"{tunnel_id}.{TUNNEL_DOMAIN}"


class BadCertificateRequest(InvalidInput):
    """An agent's certificate request is not one the hub signs (not PEM, a bad self-signature,
    not a P-256 key). Raised by `parse_request`; the hub refuses the session."""

    code = "bad_certificate_request"


def new_key() -> bytes:
    """A new ECDSA P-256 private key, PEM (PKCS#8, unencrypted: the caller stores it 0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def request_for(key_pem: bytes) -> str:
    """A PKCS#10 request for `key_pem`'s public half, PEM; the hub decides the names."""
    key = _ec_key(key_pem)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "portway agent")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True, slots=True)
class Identity:
    """An agent's end-to-end identity: its key, the certificate the hub issued for it, and the
    CA its peers' certificates must chain to. Made by `certified` from a `welcome`."""

    key_pem: bytes
    certificate: str
    peers_ca: str


def certified(key_pem: bytes, certificate: str, ca: str) -> Identity:
    """The identity a hub's `welcome` gives an agent whose key is `key_pem`; raises
    `InvalidInput` when the certificate is for another key or not from `ca`."""
    cert = x509.load_pem_x509_certificate(certificate.encode())
    issuer = x509.load_pem_x509_certificate(ca.encode())
    if _spki(cert.public_key()) != _spki(_ec_key(key_pem).public_key()):
        raise InvalidInput("the hub certified another key than this agent's", code="wrong_key")
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        raise InvalidInput(
            "the agent's certificate is not signed by the CA the hub named", code="wrong_issuer"
        ) from None
    return Identity(key_pem, certificate, ca)


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def uris_of(cert_der: bytes) -> frozenset[str]:
    """The URI subject alternative names of a certificate (DER), empty when it has none."""
    cert = x509.load_der_x509_certificate(cert_der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset()
    return frozenset(san.get_values_for_type(x509.UniformResourceIdentifier))


@dataclass(frozen=True, slots=True)
class HubIdentityCa:
    """The CA that certifies agents: the hub's own (`<data-dir>/tls/ca.pem`), which agents pin
    when the hub uses it for its agent port too. Loaded once per hub start (`load`)."""

    certificate_pem: str
    _key: ec.EllipticCurvePrivateKey
    _certificate: x509.Certificate

    @classmethod
    def load(cls, directory: Path) -> HubIdentityCa:
        """The hub's CA in `directory`, created on first use: the same files the agent port's
        certificate is issued from (`tls.ensure_ca`)."""
        key, cert = tls.ensure_ca(directory)
        return cls(cert.public_bytes(serialization.Encoding.PEM).decode(), key, cert)

    def issue(
        self,
        request: x509.CertificateSigningRequest,
        *,
        uris: tuple[str, ...],
        hostnames: tuple[str, ...] = (),
        now: datetime.datetime | None = None,
    ) -> str:
        """A certificate for the key of `request` (from `parse_request`) naming `uris` (and
        `hostnames`), valid `CERTIFICATE_VALIDITY`; PEM."""
        now = now or datetime.datetime.now(datetime.UTC)
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
        names += [x509.DNSName(h) for h in hostnames]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "portway agent")]))
            .issuer_name(self._certificate.subject)
            .public_key(request.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + CERTIFICATE_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode()


def parse_request(request_pem: str) -> x509.CertificateSigningRequest:
    """An agent's certificate request, checked: PEM, self-signed by its key, ECDSA P-256.

    Called by the hub's admission before it touches the store; raises `BadCertificateRequest`
    (the hub then refuses the session)."""
    try:
        csr = x509.load_pem_x509_csr(request_pem.encode())
        valid = csr.is_signature_valid
    except (ValueError, InvalidSignature):
        valid = False
    if not valid:
        raise BadCertificateRequest("the agent's certificate request is not a valid one")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise BadCertificateRequest("the agent's key must be ECDSA P-256")
    return csr


def _ec_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidInput("the agent's key file does not hold an EC key", code="bad_agent_key")
    return key
