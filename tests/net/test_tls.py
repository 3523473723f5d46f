from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from portway.net import tls


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_creates_ca_and_server_certificate(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    certs = tls.ensure_hub_certificates(directory)
    assert mode(directory) == 0o700
    assert mode(certs.ca_key) == 0o600
    assert mode(certs.key) == 0o600
    assert mode(certs.ca_cert) == 0o644
    assert sorted(p.name for p in directory.iterdir()) == [
        "agent-endpoint-key.pem",
        "agent-endpoint.pem",
        "ca-key.pem",
        "ca.pem",
    ]
    # The pin is the SHA-256 of the CA's DER form, spelled like openssl's -fingerprint.
    der = ssl.PEM_cert_to_DER_cert(certs.ca_pem().decode())
    assert certs.fingerprint == ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    ca = x509.load_pem_x509_certificate(certs.ca_pem())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server = x509.load_pem_x509_certificate(certs.cert.read_bytes())
    assert server.issuer == ca.subject
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]


def test_second_start_reuses_everything(tmp_path: Path) -> None:
    first = tls.ensure_hub_certificates(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    second = tls.ensure_hub_certificates(tmp_path)
    assert second == first
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_server_certificate_is_renewed_by_the_same_ca(tmp_path: Path) -> None:
    first = tls.ensure_hub_certificates(tmp_path)
    old_cert = first.cert.read_bytes()
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=380)
    renewed = tls.ensure_hub_certificates(tmp_path, now=later)
    assert renewed.fingerprint == first.fingerprint  # agents' pins stay valid
    assert renewed.cert.read_bytes() != old_cert
    cert = x509.load_pem_x509_certificate(renewed.cert.read_bytes())
    assert cert.not_valid_after_utc > later + datetime.timedelta(days=300)


def test_new_hostnames_get_a_new_server_certificate(tmp_path: Path) -> None:
    first = tls.ensure_hub_certificates(tmp_path)
    second = tls.ensure_hub_certificates(tmp_path, hostnames=("hub.example.com", "10.1.2.3"))
    assert second.fingerprint == first.fingerprint
    cert = x509.load_pem_x509_certificate(second.cert.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["hub.example.com"]


@pytest.mark.parametrize(
    "spelling",
    [
        lambda f: f,
        lambda f: f.lower(),
        lambda f: f.replace(":", ""),
        lambda f: "sha256:" + f.replace(":", "").lower(),
        lambda f: "SHA256 Fingerprint=" + f,
        lambda f: f"  {f}\n",
    ],
)
def test_pins_are_accepted_in_usual_spellings(certs: tls.HubCertificates, spelling: object) -> None:
    assert callable(spelling)
    assert tls.normalize_fingerprint(spelling(certs.fingerprint)) == certs.fingerprint


@pytest.mark.parametrize("bad", ["", "AB:CD", "zz" * 32, "sha1:" + "ab" * 32, "ab" * 33])
def test_malformed_pins_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="not a SHA-256 fingerprint"):
        tls.normalize_fingerprint(bad)


def test_client_context_refuses_a_ca_that_does_not_match_the_pin(
    certs: tls.HubCertificates, tmp_path: Path
) -> None:
    other = tls.ensure_hub_certificates(tmp_path)
    with pytest.raises(tls.PinMismatch, match="does not match"):
        tls.client_context(other.ca_pem(), certs.fingerprint, check_hostname=False)
    with pytest.raises(ValueError, match="exactly one"):
        tls.client_context(certs.ca_pem() + other.ca_pem(), certs.fingerprint, check_hostname=False)


async def round_trip(
    server_ctx: ssl.SSLContext | None, client: ssl.SSLContext | None, server_hostname: str
) -> ssl.SSLObject | None:
    """One connection to an echo server: a round trip, then :func:`tls.remember_session` on the
    transport, as an agent does once the hub's first bytes arrived. Returns its TLS object."""
    handlers: list[asyncio.Future[None]] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done = asyncio.get_running_loop().create_future()
        handlers.append(done)
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
        finally:
            writer.close()
            done.set_result(None)

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_ctx)
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            server.sockets[0].getsockname()[1],
            ssl=client,
            server_hostname=server_hostname if client is not None else None,
        )
        try:
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            tls.remember_session(writer.transport)
            ssl_object: ssl.SSLObject | None = writer.get_extra_info("ssl_object")
            return ssl_object
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
            for done in handlers:
                await asyncio.wait_for(done, 20)
    finally:
        server.close()
        await server.wait_closed()


async def handshake(
    server_ctx: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str
) -> ssl.SSLObject:
    ssl_object = await round_trip(server_ctx, client, server_hostname)
    assert ssl_object is not None
    return ssl_object


async def test_pinned_context_reaches_the_hub_and_resumes_sessions(
    certs: tls.HubCertificates,
) -> None:
    # Tickets are sealed with keys of the server context: the hub keeps one for its lifetime.
    server = tls.server_context(certs.cert, certs.key)
    client = tls.client_context(certs.ca_pem(), certs.fingerprint, check_hostname=True)
    first = await handshake(server, client, "localhost")
    assert first.version() == "TLSv1.3"
    assert not first.session_reused
    # A session opened later with the same context skips the full handshake.
    second = await handshake(server, client, "localhost")
    assert second.session_reused
    # One saved ticket resumes many connections (stateless tickets).
    for _ in range(3):
        assert (await handshake(server, client, "localhost")).session_reused
    # Without the saved session (another context), the handshake is a full one again.
    other = tls.client_context(certs.ca_pem(), certs.fingerprint, check_hostname=True)
    assert not (await handshake(server, other, "localhost")).session_reused


async def test_hostname_check_is_the_callers_choice(certs: tls.HubCertificates) -> None:
    server = tls.server_context(certs.cert, certs.key)
    strict = tls.client_context(certs.ca_pem(), certs.fingerprint, check_hostname=True)
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        await handshake(server, strict, "hub.example.com")
    pinned_only = tls.client_context(certs.ca_pem(), certs.fingerprint, check_hostname=False)
    assert (await handshake(server, pinned_only, "hub.example.com")).version() == "TLSv1.3"


async def test_a_hub_with_another_ca_is_rejected(
    certs: tls.HubCertificates, tmp_path: Path
) -> None:
    impostor = tls.ensure_hub_certificates(tmp_path)  # same names, different CA
    client = tls.client_context(certs.ca_pem(), certs.fingerprint, check_hostname=False)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        await handshake(tls.server_context(impostor.cert, impostor.key), client, "localhost")


async def test_plain_connections_have_nothing_to_remember() -> None:
    assert await round_trip(None, None, "localhost") is None  # remember_session: a no-op
    tls.remember_session(None)  # nor does a transport that is gone fail
