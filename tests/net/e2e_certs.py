"""Certificates for end-to-end TLS tests, minted with `cryptography` directly: a CA, and agent
certificates whose subject alternative names are ``URI:urn:portway:agent:<id>`` and, for a
tunnel's server side, ``DNS:<tunnel id>.tunnel.portway.invalid`` (protocol.md §18)."""

from __future__ import annotations

import datetime
import ssl
import uuid
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from portway.net.e2e import peer_context
from portway.net.identity import agent_uri, tunnel_hostname

_NOW = datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class AgentCert:
    """An agent's certificate and key (PEM), and the CA that issued it, which it trusts."""

    uri: str
    chain_pem: bytes
    key_pem: bytes
    trust_pem: bytes

    def context(self, *, server: bool, trust: bytes | None = None) -> ssl.SSLContext:
        return peer_context(self.chain_pem, self.key_pem, trust or self.trust_pem, server=server)


class Authority:
    """A CA standing in for the hub's (`portway.net.identity.HubIdentityCa` is the real one)."""

    def __init__(self, name: str = "Portway hub CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            _builder(subject, self.key.public_key())
            .issuer_name(subject)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(cert_sign=True), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, agent_id: uuid.UUID, *, tunnel_id: uuid.UUID | None = None) -> AgentCert:
        """An agent's certificate; with ``tunnel_id``, that tunnel's (the server side's)."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(agent_uri(agent_id))]
        usage = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if tunnel_id is not None:
            names.append(x509.DNSName(tunnel_hostname(tunnel_id)))
            usage.append(ExtendedKeyUsageOID.SERVER_AUTH)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"agent {agent_id}")])
        cert = (
            _builder(subject, key.public_key())
            .issuer_name(self.cert.subject)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        chain = cert.public_bytes(serialization.Encoding.PEM)  # the peer has the CA
        return AgentCert(agent_uri(agent_id), chain, key_pem, self.pem)


def _builder(subject: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - datetime.timedelta(minutes=5))
        .not_valid_after(_NOW + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
