"""Version 2 sessions between real agents and a real hub: how many there are, what losing one
does, and what a peer that breaks the protocol or floods SYNs gets (docs/protocol.md §10-14)."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import httpx
import pytest

from portway.testing.cut_proxy import CutProxy
from portway.testing.hub import HubProcess
from portway.testing.machines import Machine
from portway.testing.origins import EchoOrigin
from portway.testing.waiting import wait_until
from portway.wire.codes import Reason
from portway.wire.frames import encode_preface
from portway.wire.mux_frames import (
    HEADER,
    HEADER_SIZE,
    Flag,
    FrameType,
    GoAwayCode,
    decode_go_away,
    encode_header,
    encode_ping,
)

from .tunnels import expose, tunnel, wait_status


def agent_port(api: httpx.Client) -> tuple[int, bool]:
    endpoint = api.get("/v1/hub").json()["agentEndpoint"]
    return int(endpoint["port"]), bool(endpoint["tls"])


def through(machine: Machine, proxy: CutProxy, hub_port: int) -> None:
    """Point `machine`'s pinned agent endpoint at `proxy` instead of the hub."""
    config = machine.home / "config.toml"
    text = config.read_text()
    assert f':{hub_port}"' in text, "the profile pins the hub's agent endpoint"
    config.write_text(text.replace(f':{hub_port}"', f':{proxy.port}"'))


@pytest.fixture
def proxy(api: httpx.Client) -> Iterator[CutProxy]:
    port, _tls = agent_port(api)
    with CutProxy(port) as running:
        yield running


def serve_echo(machine: Machine, api: httpx.Client, echo_port: int, name: str) -> int:
    """Expose a TCP echo publicly from `machine`; its hub port once the tunnel is active."""
    expose(machine, f"127.0.0.1:{echo_port}", name, "--public")
    wait_status(api, name, "active")
    return int(tunnel(api, name)["hubPort"])


def echo_open(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    assert exchange(sock, b"hello") == b"hello"
    return sock


def exchange(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        data = sock.recv(65536)
        if not data:
            break
        got += data
    return got


def test_the_agent_keeps_its_session_count_and_reopens_a_lost_one_at_once(
    machine: Callable[[str], Machine], api: httpx.Client, proxy: CutProxy
) -> None:
    hub_port, _tls = agent_port(api)
    with EchoOrigin() as echo, ExitStack() as stack:
        server = machine("sessions-server")
        through(server, proxy, hub_port)
        expose(server, f"127.0.0.1:{echo.port}", "sessions-echo", "--public", "--sessions", "2")
        wait_status(api, "sessions-echo", "active")
        wait_until(lambda: len(proxy.live()) == 2, what="the agent's two sessions")
        public = int(tunnel(api, "sessions-echo")["hubPort"])

        # 40 connections, spread over both sessions, then 40 more: still two TCP connections.
        clients = [stack.enter_context(echo_open(public)) for _ in range(40)]
        assert len(proxy.live()) == 2

        lost = proxy.cut(1)  # the session that joined: its streams go, the control stays
        wait_until(lambda: len(proxy.live()) == 2, timeout=5, what="the session reopened")
        assert lost not in proxy.live()
        kept, reset = 0, 0
        for sock in clients:
            try:
                answer = exchange(sock, b"still there?")
            except OSError:
                answer = b""
            if answer == b"still there?":
                kept += 1
            else:
                assert answer == b"", f"a client got wrong bytes: {answer!r}"
                reset += 1
        assert kept and reset, f"{kept} kept, {reset} reset: each session carried some"
        assert kept + reset == 40
        # New connections work at once, over the session that stayed and the reopened one.
        for _ in range(10):
            with echo_open(public):
                pass
        assert len(proxy.live()) == 2


def test_losing_the_control_session_moves_control_and_keeps_the_other_streams(
    machine: Callable[[str], Machine], api: httpx.Client, proxy: CutProxy, hub: HubProcess
) -> None:
    hub_port, _tls = agent_port(api)
    with EchoOrigin() as echo, ExitStack() as stack:
        server = machine("control-server")
        through(server, proxy, hub_port)
        expose(server, f"127.0.0.1:{echo.port}", "control-echo", "--public")
        wait_status(api, "control-echo", "active")
        wait_until(lambda: len(proxy.live()) == 2, what="the agent's two sessions")
        public = int(tunnel(api, "control-echo")["hubPort"])
        clients = [stack.enter_context(echo_open(public)) for _ in range(20)]

        proxy.cut(0)  # the session whose stream 1 carries control
        wait_until(lambda: "agent control moved" in hub.stderr(), what="control to move")
        wait_until(lambda: len(proxy.live()) == 2, timeout=5, what="the session reopened")
        answers = []
        for sock in clients:
            try:
                answers.append(exchange(sock, b"still there?"))
            except OSError:
                answers.append(b"")
        assert set(answers) == {b"still there?", b""}, "half kept, half reset, none garbled"
        # The session lives on: the tunnel stays active, takes new connections, and the control
        # stream carries both ways: a tunnel added now reaches the agent (desired state), its
        # probe comes back (status), and it serves.
        assert tunnel(api, "control-echo")["status"] == "active"
        with echo_open(public):
            pass
        with EchoOrigin() as second:
            created = api.post(
                "/v1/tunnels",
                json={
                    "target": f"127.0.0.1:{second.port}", "name": "control-echo-2",
                    "agentId": tunnel(api, "control-echo")["agentId"], "public": True,
                },
            )  # fmt: skip
            assert created.status_code == 201, created.text
            probed = wait_until(
                lambda: tunnel(api, "control-echo-2")["detectedProtocol"], what="the new probe"
            )
            assert probed
            with echo_open(int(tunnel(api, "control-echo-2")["hubPort"])):
                pass
        assert "agent disconnected" not in hub.stderr().split("agent control moved")[-1]


def test_the_agent_reopens_a_lost_session_within_a_second(
    machine: Callable[[str], Machine], api: httpx.Client, proxy: CutProxy
) -> None:
    hub_port, _tls = agent_port(api)
    with EchoOrigin() as echo:
        server = machine("reopen-server")
        through(server, proxy, hub_port)
        expose(server, f"127.0.0.1:{echo.port}", "reopen-echo", "--sessions", "3")
        wait_until(lambda: len(proxy.live()) == 3, what="the agent's three sessions")
        cut_at = time.monotonic()
        proxy.cut(2)
        wait_until(lambda: len(proxy.live()) == 3, timeout=5, what="the session reopened")
        assert proxy.connections[-1].accepted_at - cut_at < 1.0


def raw_session(api: httpx.Client) -> socket.socket:
    """A bare connection to the hub's agent port (TLS when the hub uses it), preface sent."""
    port, tls = agent_port(api)
    sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # this peer attacks the hub; it pins nothing
        sock = context.wrap_socket(sock)
    sock.sendall(encode_preface(2))
    return sock


Frame = tuple[int, int, int, int, bytes]


def read_frames(sock: socket.socket, until: Callable[[list[Frame]], bool]) -> list[Frame]:
    """Frames the hub sends (type, flags, stream, length, payload) until `until` holds or EOF."""
    buffer, frames = b"", list[Frame]()
    while not until(frames):
        data = sock.recv(65536)
        if not data:
            break
        buffer += data
        while len(buffer) >= HEADER_SIZE:
            _version, kind, flags, stream, length = HEADER.unpack_from(buffer)
            size = length if kind in (FrameType.DATA, FrameType.GO_AWAY) else 0
            if len(buffer) < HEADER_SIZE + size:
                break
            frames.append((kind, flags, stream, length, buffer[HEADER_SIZE : HEADER_SIZE + size]))
            buffer = buffer[HEADER_SIZE + size :]
    return frames


def test_a_malformed_frame_gets_go_away_and_the_hub_serves_everyone_else(
    machine: Callable[[str], Machine], api: httpx.Client, hub: HubProcess
) -> None:
    with EchoOrigin() as echo:
        public = serve_echo(machine("bystander"), api, echo.port, "bystander-echo")
        with echo_open(public) as before:
            with raw_session(api) as attacker:
                attacker.sendall(b"\x07" + bytes(HEADER_SIZE - 1))  # version 7: not a frame
                frames = read_frames(attacker, lambda f: False)  # to EOF: the hub closes
            go_away = [f for f in frames if f[0] == FrameType.GO_AWAY]
            assert go_away, f"no GO_AWAY in {frames}"
            code, message = decode_go_away(go_away[0][4])
            assert code == GoAwayCode.PROTOCOL_ERROR and message
            wait_until(lambda: "closing the session" in hub.stderr(), what="the hub's log line")
            assert exchange(before, b"unaffected") == b"unaffected"
        with echo_open(public):
            pass


def test_a_syn_flood_is_refused_with_limit_and_the_session_stays_up(
    machine: Callable[[str], Machine], api: httpx.Client
) -> None:
    with EchoOrigin() as echo:
        public = serve_echo(machine("flood-bystander"), api, echo.port, "flood-echo")
        with raw_session(api) as attacker:
            syns = 6000  # three times the hub's 2,000 a second from one session
            flood = b"".join(
                encode_header(FrameType.WINDOW_UPDATE, Flag.SYN, 3 + 2 * i, 0) for i in range(syns)
            )
            attacker.sendall(flood + encode_ping(42))
            frames = read_frames(
                attacker,
                lambda f: any(
                    k == FrameType.PING and g & Flag.ACK and n == 42 for k, g, _, n, _ in f
                ),
            )
            resets = [f for f in frames if f[0] == FrameType.WINDOW_UPDATE and f[1] & Flag.RST]
            assert len(resets) == syns, "every stream the hub does not want is reset"
            reasons = {length for *_, length, _ in resets}
            assert Reason.LIMIT in reasons, "SYNs beyond the rate are refused with `limit`"
            assert not [f for f in frames if f[0] == FrameType.GO_AWAY], "the session stays up"
        with echo_open(public) as sock:
            assert exchange(sock, b"served") == b"served"
