"""Agent identities: keys made on the agent, requests the hub checks, certificates it issues."""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from portway.errors import InvalidInput
from portway.net import identity
from portway.net.tls import ensure_hub_certificates

AGENT, WORKSPACE, TUNNEL = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


@pytest.fixture
def ca(tmp_path: Path) -> identity.HubIdentityCa:
    return identity.HubIdentityCa.load(tmp_path / "tls")


def _issued(ca: identity.HubIdentityCa, key: bytes, **names: tuple[str, ...]) -> str:
    request = identity.parse_request(identity.request_for(key))
    return ca.issue(request, uris=names.get("uris", ()), hostnames=names.get("hostnames", ()))


def test_a_certificate_names_the_agent_and_chains_to_the_hub_ca(
    ca: identity.HubIdentityCa, tmp_path: Path
) -> None:
    key = identity.new_key()
    uris = (identity.agent_uri(AGENT), identity.workspace_uri(WORKSPACE))
    pem = _issued(ca, key, uris=uris, hostnames=(identity.tunnel_hostname(TUNNEL),))
    cert = x509.load_pem_x509_certificate(pem.encode())
    der = cert.public_bytes(serialization.Encoding.DER)
    assert identity.uris_of(der) == frozenset(uris)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [f"{TUNNEL}.tunnel.portway.invalid"]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == identity.CERTIFICATE_VALIDITY + identity.CLOCK_SKEW
    # The same CA the agent port uses, so agents that pin it trust their peers' certificates.
    hub_ca = ensure_hub_certificates(tmp_path / "tls").ca_pem().decode()
    assert ca.certificate_pem == hub_ca
    assert identity.certified(key, pem, hub_ca).certificate == pem


def test_the_ca_survives_a_restart(tmp_path: Path) -> None:
    first = identity.HubIdentityCa.load(tmp_path / "tls")
    assert identity.HubIdentityCa.load(tmp_path / "tls").certificate_pem == first.certificate_pem


def _csr(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("request_pem", "why"),
    [
        ("not a certificate request", "not a valid one"),
        (_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048)), "P-256"),
        (_csr(ec.generate_private_key(ec.SECP384R1())), "P-256"),
    ],
    ids=["garbage", "rsa", "p384"],
)
def test_a_request_the_hub_does_not_sign_is_refused(request_pem: str, why: str) -> None:
    with pytest.raises(identity.BadCertificateRequest, match=why) as caught:
        identity.parse_request(request_pem)
    assert caught.value.code == "bad_certificate_request"


def test_a_tampered_request_is_refused() -> None:
    pem = identity.request_for(identity.new_key())
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0xFF  # inside the signature
    forged = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(identity.BadCertificateRequest):
        identity.parse_request(forged.decode())


def test_an_agent_refuses_a_certificate_for_another_key_or_from_another_ca(
    ca: identity.HubIdentityCa, tmp_path: Path
) -> None:
    key, other = identity.new_key(), identity.new_key()
    uris = (identity.agent_uri(AGENT),)
    with pytest.raises(InvalidInput, match="another key") as caught:
        identity.certified(key, _issued(ca, other, uris=uris), ca.certificate_pem)
    assert caught.value.code == "wrong_key"
    stranger = identity.HubIdentityCa.load(tmp_path / "other")
    with pytest.raises(InvalidInput, match="not signed by") as caught:
        identity.certified(key, _issued(stranger, key, uris=uris), ca.certificate_pem)
    assert caught.value.code == "wrong_issuer"


def test_certificates_are_dated_from_the_given_now(ca: identity.HubIdentityCa) -> None:
    now = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    request = identity.parse_request(identity.request_for(identity.new_key()))
    cert = x509.load_pem_x509_certificate(ca.issue(request, uris=(), now=now).encode())
    assert cert.not_valid_after_utc == now + identity.CERTIFICATE_VALIDITY
