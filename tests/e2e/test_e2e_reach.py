"""End-to-end reach between two agents (protocol.md §19): what the hub relays is TLS records it
cannot read, and each agent refuses a peer the hub did not name. A real hub and two real agents
in process, over their TLS sessions, with a tap on the hub's stream bridges."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid

import pytest

from portway.hub.dataplane import channels, pairing
from portway.net import identity

from .agent_pair import SECRET, AgentPair, Echo, round_trip, tap_relayed
from .in_process import WAIT, until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

MB = 1024 * 1024


async def refused(port: int) -> None:
    """A client of 127.0.0.1:`port` that writes the secret is cut without an answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(SECRET * 10)
        async with asyncio.timeout(WAIT):
            with contextlib.suppress(ConnectionResetError):  # a reset, or a FIN: no answer
                assert await reader.read() == b""
    finally:
        writer.close()


async def test_reach_is_encrypted_end_to_end_and_the_hub_relays_no_plaintext(
    pair: AgentPair, echo: tuple[Echo, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, target_port = echo
    tunnel = await pair.expose(target_port, "vault")
    port = await pair.reach(tunnel, "vault")
    relayed = tap_relayed(monkeypatch)
    payload = (SECRET + bytes(range(256))) * (MB // 256)
    answer = await round_trip(port, payload)
    assert hashlib.sha256(answer).digest() == hashlib.sha256(payload).digest()
    seen = b"".join(relayed)
    assert len(seen) > 2 * len(payload)  # both ways went through the hub's bridge...
    assert SECRET not in seen  # ...as records it cannot read
    assert b"portway-plaintext" not in seen
    # Several connections at once, each its own handshake.
    answers = await asyncio.gather(*(round_trip(port, SECRET * (i + 1)) for i in range(20)))
    assert answers == [SECRET * (i + 1) for i in range(20)]
    assert SECRET not in b"".join(relayed)


async def test_a_tunnel_that_opts_out_is_relayed_in_the_clear(
    pair: AgentPair, echo: tuple[Echo, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, target_port = echo
    tunnel = await pair.expose(target_port, "inspected", metadata={"e2e": False})
    port = await pair.reach(tunnel, "inspected")
    relayed = tap_relayed(monkeypatch)
    assert await round_trip(port, SECRET * 100) == SECRET * 100
    assert SECRET * 100 in b"".join(relayed)  # the tap does see plaintext when there is some


async def test_a_reaching_agent_refuses_an_exposing_agent_the_hub_did_not_name(
    pair: AgentPair, echo: tuple[Echo, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    target, target_port = echo
    tunnel = await pair.expose(target_port, "named")
    port = await pair.reach(tunnel, "named")
    reaching_uri = identity.agent_uri(pair.ids["reaching"])
    stranger = identity.agent_uri(uuid.uuid4())
    monkeypatch.setattr(pairing, "e2e_peers", lambda route, r, s: (stranger, reaching_uri))
    await refused(port)
    found = await until(
        lambda: [e for who, e, _ in pair.events if (who, e) == ("reaching", "e2e_refused")],
        "the reaching agent to report the refusal",
    )
    assert found
    details = next(i for who, e, i in pair.events if e == "e2e_refused")
    assert stranger in details["error"]
    assert SECRET not in target.received  # nothing went past the refusal


async def test_the_exposing_agent_refuses_a_reaching_agent_the_hub_did_not_name(
    pair: AgentPair, echo: tuple[Echo, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    target, target_port = echo
    tunnel = await pair.expose(target_port, "guarded")
    port = await pair.reach(tunnel, "guarded")
    exposing_uri = identity.agent_uri(pair.ids["exposing"])
    stranger = identity.agent_uri(uuid.uuid4())
    monkeypatch.setattr(pairing, "e2e_peers", lambda route, r, s: (exposing_uri, stranger))
    await refused(port)
    await until(
        lambda: [e for who, e, _ in pair.events if (who, e) == ("exposing", "e2e_refused")],
        "the exposing agent to report the refusal",
    )
    assert SECRET not in target.received  # nothing went past the refusal


async def test_a_peer_serving_another_tunnels_certificate_is_refused(
    pair: AgentPair, echo: tuple[Echo, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub relays a reach of one tunnel to the agent's other tunnel: same agent, same CA,
    but the certificate names the other tunnel's host name."""
    target, target_port = echo
    wanted = await pair.expose(target_port, "wanted")
    other = await pair.expose(target_port, "other")
    port = await pair.reach(wanted, "wanted")
    assert pair.hub.dataplane is not None
    other_route = pair.hub.dataplane.table.route(uuid.UUID(other))
    assert other_route is not None
    real = channels.dial_message
    monkeypatch.setattr(
        pairing, "dial_message", lambda route, conn, **kw: real(other_route, conn, **kw)
    )
    await refused(port)
    await until(
        lambda: [i for who, e, i in pair.events if (who, e) == ("reaching", "e2e_refused")],
        "the reaching agent to refuse the other tunnel's certificate",
    )
    error = next(i["error"] for who, e, i in pair.events if e == "e2e_refused")
    assert "hostname mismatch" in error or identity.tunnel_hostname(wanted) in error
    assert SECRET not in target.received  # nothing went past the refusal
