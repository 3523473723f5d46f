"""Agents get their end-to-end identity from the hub at every session start (protocol.md §18):
a real hub and agent in process, over TLS sessions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from portway.agent.links import HubLinks
from portway.agent.runtime import AgentRuntime
from portway.agent.settings import AgentSettings
from portway.net import identity
from portway.net.mux_stream import MuxStream
from portway.testing.hub import running_hub
from portway.wire.codes import SessionCode
from portway.wire.control_messages import FEATURE_E2E, ControlHello, Refused
from portway.wire.messages import Message

from .in_process import WAIT, start_stack, until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


async def test_an_agent_with_a_key_is_certified_by_the_hub_ca(tmp_path: Path) -> None:
    key = identity.new_key()
    async with start_stack(tmp_path, AgentRuntime, identity_key=key) as stack:
        mine = await until(lambda: stack.agent.identity, "the agent's certificate")
        hub_ca = (await stack.api.get("/v1/hub")).json()["agentEndpoint"]["caCertificate"]
        assert mine.peers_ca == hub_ca  # the CA the agent already pins
        cert = x509.load_pem_x509_certificate(mine.certificate.encode())
        workspace = stack.sessions()[0].workspace_id
        assert identity.uris_of(cert.public_bytes(serialization.Encoding.DER)) == {
            identity.agent_uri(stack.agent_id),
            identity.workspace_uri(workspace),
        }
        # Every session of the agent's carries the same certificate, and a new session start
        # (after the hub lost the agent) gets a fresh one for the same key.
        assert {s.certificate for s in stack.sessions()} == {mine.certificate}
        for link in stack.agent_links():
            link.close()
        fresh = await until(
            lambda: (i := stack.agent.identity) and i.certificate != mine.certificate and i,
            "a certificate from the next session",
        )
        assert identity.certified(key, fresh.certificate, hub_ca) == fresh


async def test_an_agent_without_a_key_runs_as_before(tmp_path: Path) -> None:
    async with start_stack(tmp_path, AgentRuntime) as stack:
        await until(stack.agent.connected.is_set, "the agent's session")
        assert stack.agent.identity is None
        assert {s.certificate for s in stack.sessions()} == {None}


async def test_a_bad_certificate_request_is_refused_with_the_reason(tmp_path: Path) -> None:
    async with running_hub(tmp_path / "hub") as hub:
        key = hub.config.admin_key_file.read_text().strip()
        async with httpx.AsyncClient(
            base_url=hub.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=WAIT
        ) as api:
            token = (await api.post("/v1/agents", json={"name": "forger"})).json()["token"]
            endpoint = (await api.get("/v1/hub")).json()["agentEndpoint"]
        settings = AgentSettings(
            host="127.0.0.1", port=int(endpoint["port"]), token=token, tls=True,
            ca_certificate=endpoint["caCertificate"], ca_fingerprint=endpoint["caFingerprint"],
        )  # fmt: skip

        def no_streams(stream: MuxStream, first: Message) -> None:
            raise AssertionError("the hub opened a stream to a refused agent")

        links = HubLinks(settings.host, settings.port, settings.ssl_context(), no_streams)
        try:
            _, conn = await links.open(
                ControlHello(token=token, features=(FEATURE_E2E,), csr="-----BEGIN nonsense")
            )
            answer = await conn.recv()
        finally:
            links.close()
        assert isinstance(answer, Refused)
        assert answer.reason is SessionCode.BAD_HELLO
        assert "certificate request is not a valid one" in answer.message
        assert hub.dataplane is not None and not hub.dataplane._sessions.all()


async def test_an_exposed_tunnel_comes_with_its_certificate_and_leaves_with_it(
    tmp_path: Path,
) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    key = identity.new_key()
    try:
        async with start_stack(tmp_path, AgentRuntime, identity_key=key) as stack:
            await stack.expose(port, "certified")
            tunnel = (await stack.api.get("/v1/tunnels/certified")).json()["id"]
            pem = await until(
                lambda: stack.agent.e2e.certificates.get(tunnel), "the tunnel's certificate"
            )
            mine = stack.agent.identity
            assert mine is not None
            identity.certified(key, pem, mine.peers_ca)
            cert = x509.load_pem_x509_certificate(pem.encode())
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert san.get_values_for_type(x509.DNSName) == [identity.tunnel_hostname(tunnel)]
            assert (await stack.api.delete("/v1/tunnels/certified")).status_code == 204
            await until(
                lambda: tunnel not in stack.agent.e2e.certificates,
                "the deleted tunnel's certificate to go",
            )
    finally:
        server.close()
        await server.wait_closed()
