"""The direct path between two agents (protocol.md §20-21): on loopback the reaching agent goes
straight to the exposing agent's direct port, a black-holed or dead candidate falls back to the
relay without losing a byte, and the hub's word still ends a direct connection. A real hub and
two real agents in process, over their TLS sessions."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

from portway.agent import serving
from portway.agent.direct_port import DirectPort

from .agent_pair import SECRET, AgentPair, Echo, round_trip, tap_relayed
from .in_process import WAIT, until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


@pytest.fixture
def black_hole() -> Iterator[str]:
    """host:port of a listener whose queue is full: the kernel drops every SYN to it, so a
    connection attempt hangs as to an address behind a firewall that drops."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)
    filler = socket.create_connection(sock.getsockname())
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        filler.close()
        sock.close()


def paths(pair: AgentPair) -> list[str]:
    return [info["path"] for who, event, info in pair.events if event == "path"]


async def reached_tunnel(pair: AgentPair, target_port: int, name: str) -> tuple[str, int]:
    """A tunnel and a local port reaching it, after one relayed connection (which brings the
    exposing agent's candidates)."""
    tunnel = await pair.expose(target_port, name)
    port = await pair.reach(tunnel, name)
    assert await round_trip(port, b"first") == b"first"
    assert paths(pair) == ["relayed"]
    return tunnel, port


async def open_echo(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping")
    async with asyncio.timeout(WAIT):
        assert await reader.readexactly(4) == b"ping"
    return reader, writer


async def cut_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """How long until the connection `reader` reads ends (reset or FIN); fails past
    `seconds`."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(seconds):
            assert await reader.read() == b""
    except ConnectionResetError:
        pass
    return time.monotonic() - started


async def test_agents_on_one_machine_talk_directly_and_the_hub_relays_nothing(
    pair: AgentPair, echo: tuple[Echo, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, target_port = echo
    _, port = await reached_tunnel(pair, target_port, "db")
    relayed = tap_relayed(monkeypatch)
    payload = SECRET * 40_000  # 1 MB
    assert await round_trip(port, payload) == payload
    answers = await asyncio.gather(*(round_trip(port, SECRET * i) for i in range(1, 11)))
    assert answers == [SECRET * i for i in range(1, 11)]
    assert paths(pair) == ["relayed"] + ["direct"] * 11
    assert relayed == []  # not one byte through the hub
    assert pair.reaching.paths == {"direct": 11, "relayed": 1}
    _, writer = await open_echo(port)
    direct_port = pair.exposing.direct_port
    assert direct_port is not None and direct_port.carried == 1
    writer.close()


async def test_the_path_that_loses_the_race_never_reaches_the_target(
    pair: AgentPair, echo: tuple[Echo, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both paths run for every connection (no head start): the target sees one connection per
    client, the winner's, as a server taking one client at a time (iperf3) needs."""
    target, target_port = echo
    _, port = await reached_tunnel(pair, target_port, "raced")
    monkeypatch.setattr(serving, "HEAD_START", 0.0)
    before = target.accepted
    answers = await asyncio.gather(*(round_trip(port, SECRET * i) for i in range(1, 21)))
    assert answers == [SECRET * i for i in range(1, 21)]
    assert set(paths(pair)[1:]) <= {"direct", "relayed"} and len(paths(pair)) == 21
    assert target.accepted - before == 20


async def test_a_black_holed_candidate_falls_back_to_the_relay_within_a_second(
    pair: AgentPair, echo: tuple[Echo, int], black_hole: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, target_port = echo
    monkeypatch.setattr(DirectPort, "candidates", lambda self, toward_hub: (black_hole,))
    tunnel = await pair.expose(target_port, "hidden")
    assert pair.hub.dataplane is not None
    (exposing,) = pair.hub.dataplane._sessions.serving(pair.ids["exposing"])
    await until(lambda: exposing.candidates == (black_hole,), "the hub to hear the candidate")
    port = await pair.reach(tunnel, "hidden")
    assert await round_trip(port, b"first") == b"first"  # relayed: brings the candidate
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(SECRET)  # the first bytes, sent before any path exists
    async with asyncio.timeout(WAIT):
        assert await reader.readexactly(len(SECRET)) == SECRET
    assert time.monotonic() - started < 1.0
    assert paths(pair) == ["relayed", "relayed"]
    writer.close()
    # The candidate is not tried again for a while: the next connection goes to the relay
    # at once.
    assert await round_trip(port, SECRET) == SECRET
    assert paths(pair)[-1] == "relayed"


async def test_killing_the_direct_path_moves_new_connections_to_the_relay(
    pair: AgentPair, echo: tuple[Echo, int]
) -> None:
    _, target_port = echo
    _, port = await reached_tunnel(pair, target_port, "moved")
    reader, writer = await open_echo(port)
    assert paths(pair)[-1] == "direct"
    direct_port = pair.exposing.direct_port
    assert direct_port is not None
    await direct_port.close()  # the direct path dies: its listener and its connections
    await cut_within(reader, WAIT)
    writer.close()
    for _ in range(3):
        assert await round_trip(port, SECRET) == SECRET
    assert paths(pair)[-3:] == ["relayed"] * 3


async def test_pausing_the_tunnel_cuts_a_direct_connection_within_a_second(
    pair: AgentPair, echo: tuple[Echo, int]
) -> None:
    _, target_port = echo
    tunnel, port = await reached_tunnel(pair, target_port, "paused")
    reader, writer = await open_echo(port)
    assert paths(pair)[-1] == "direct"
    started = time.monotonic()
    paused = await pair.api.patch(f"/v1/tunnels/{tunnel}", json={"status": "paused"})
    assert paused.status_code == 200, paused.text
    await cut_within(reader, WAIT)
    assert time.monotonic() - started < 1.0
    writer.close()
    direct_port = pair.exposing.direct_port
    assert direct_port is not None
    await until(lambda: direct_port.carried == 0, "the direct connection to be gone")


async def test_revoking_the_reaching_agent_cuts_its_direct_connections(
    pair: AgentPair, echo: tuple[Echo, int]
) -> None:
    _, target_port = echo
    _, port = await reached_tunnel(pair, target_port, "revoked")
    reader, writer = await open_echo(port)
    assert paths(pair)[-1] == "direct"
    started = time.monotonic()
    gone = await pair.api.delete(f"/v1/agents/{pair.ids['reaching']}")
    assert gone.status_code == 204, gone.text
    await cut_within(reader, WAIT)
    assert time.monotonic() - started < 1.0
    writer.close()


async def test_revoking_the_exposing_agent_cuts_its_direct_connections(
    pair: AgentPair, echo: tuple[Echo, int]
) -> None:
    _, target_port = echo
    _, port = await reached_tunnel(pair, target_port, "gone")
    reader, writer = await open_echo(port)
    assert paths(pair)[-1] == "direct"
    started = time.monotonic()
    gone = await pair.api.delete(f"/v1/agents/{pair.ids['exposing']}")
    assert gone.status_code == 204, gone.text
    await cut_within(reader, WAIT)
    assert time.monotonic() - started < 1.0
    writer.close()


async def test_reach_with_relay_only_never_goes_direct(
    pair: AgentPair, echo: tuple[Echo, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, target_port = echo
    pair.reaching.direct.enabled = False  # `portway reach --relay`
    _, port = await reached_tunnel(pair, target_port, "relayonly")
    relayed = tap_relayed(monkeypatch)
    for _ in range(3):
        assert await round_trip(port, SECRET) == SECRET
    assert paths(pair) == ["relayed"] * 4
    assert relayed and SECRET not in b"".join(relayed)


async def test_direct_connections_count_in_the_tunnels_stats(
    pair: AgentPair, echo: tuple[Echo, int]
) -> None:
    """The hub carries none of a direct connection's bytes: the exposing agent reports them."""
    _, target_port = echo
    tunnel, port = await reached_tunnel(pair, target_port, "counted")
    payload = SECRET * 40_000
    _, writer = await open_echo(port)  # still open while the counters travel
    assert await round_trip(port, payload) == payload
    assert paths(pair)[-2:] == ["direct", "direct"]

    async def stats() -> dict[str, int]:
        found: dict[str, int] = (await pair.api.get(f"/v1/tunnels/{tunnel}")).json()["stats"]
        return found

    async with asyncio.timeout(WAIT):
        while not (
            (s := await stats())["bytesIn"] >= len(payload) + 4
            and s["bytesOut"] >= len(payload) + 4
            and s["totalConnections"] == 3  # the relayed one, and two direct
            and s["activeConnections"] == 1
        ):
            await asyncio.sleep(0.1)
    writer.close()
    async with asyncio.timeout(WAIT):
        while (await stats())["activeConnections"] != 0:
            await asyncio.sleep(0.1)
    assert (await stats())["totalConnections"] == 3
