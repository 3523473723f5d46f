"""The exposing agent's target checks: a protocol is found out once per tunnel and target, even
when several desired states (tunnels created together) start checks of it at the same time."""

from __future__ import annotations

import asyncio
from typing import Any

from portway.agent.dialer import Dialer
from portway.agent.targets import TargetWatch
from portway.domain.dial_policy import TargetPolicy
from portway.wire.control_messages import Protocol, TunnelSpec
from tests.probe.fakes import BannerServer

SSH_BANNER = b"SSH-2.0-OpenSSH_9.2p1\r\n"


def _watch() -> tuple[TargetWatch, list[str]]:
    detected: list[str] = []

    def on_state(event: str, fields: dict[str, Any]) -> None:
        if event == "detected":
            detected.append(fields["protocol"])

    return TargetWatch(Dialer(TargetPolicy()), on_state), detected


async def test_concurrent_checks_of_one_tunnel_detect_it_once() -> None:
    watch, detected = _watch()
    async with BannerServer(SSH_BANNER) as server:
        spec = TunnelSpec("t1", "ssh", Protocol.TCP, "127.0.0.1", server.port)
        statuses = await asyncio.gather(*(watch.check(spec) for _ in range(4)))
        greeted = sum(1 for sent in server.received if sent == b"")
    assert all(status.ok for status in statuses)
    assert detected == ["tcp"]
    assert [s.detected is not None for s in statuses].count(True) == 1
    # Four bare liveness connects and the one detection's greeting connection.
    assert len(server.received) == 5 and greeted == 5


async def test_a_moved_target_is_detected_again() -> None:
    watch, detected = _watch()
    async with BannerServer(SSH_BANNER) as first, BannerServer(SSH_BANNER) as second:
        spec = TunnelSpec("t1", "ssh", Protocol.TCP, "127.0.0.1", first.port)
        await watch.check(spec)
        await watch.check(spec)
        moved = TunnelSpec("t1", "ssh", Protocol.TCP, "127.0.0.1", second.port)
        status = await watch.check(moved)
    assert detected == ["tcp", "tcp"]
    assert status.detected is not None
