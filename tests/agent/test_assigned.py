"""The exposing agent looks an assignment's tunnel up in its latest desired state, and waits a
little for one that has not arrived: the hub pushes a new tunnel on the control session and may
assign its first visitor on a data channel (another connection) at once."""

from __future__ import annotations

import asyncio

from portway.agent.assigned import ServedTunnels
from portway.wire.assignment_messages import Assign, AssignMode
from portway.wire.control_messages import Protocol, TunnelSpec

SPEC = TunnelSpec("t1", "db", Protocol.TCP, "127.0.0.1", 5432)


def _assign(port: int = 5432) -> Assign:
    return Assign(
        conn="c1", mode=AssignMode.DIAL, tunnel="t1", protocol=Protocol.TCP,
        host="127.0.0.1", port=port,
    )  # fmt: skip


async def test_an_assignment_ahead_of_its_desired_state_waits_for_it() -> None:
    tunnels = ServedTunnels()
    found = asyncio.create_task(tunnels.find(_assign(), wait=10))
    await asyncio.sleep(0)
    tunnels.update([TunnelSpec("t0", "other", Protocol.TCP, "127.0.0.1", 22)])
    await asyncio.sleep(0)
    assert not found.done()  # a desired state without it: still waiting
    tunnels.update([SPEC])
    assert await asyncio.wait_for(found, 1) == SPEC


async def test_a_known_tunnel_is_found_at_once() -> None:
    tunnels = ServedTunnels()
    tunnels.update([SPEC])
    assert await tunnels.find(_assign(), wait=0) == SPEC


async def test_a_tunnel_never_pushed_or_at_another_target_is_not_served() -> None:
    tunnels = ServedTunnels()
    assert await tunnels.find(_assign(), wait=0.05) is None
    tunnels.update([SPEC])
    assert await tunnels.find(_assign(port=6543), wait=0.05) is None
