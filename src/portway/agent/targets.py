"""Each served tunnel's target as the exposing agent sees it: reachable or not, and what it is.

`AgentRuntime` calls `TargetWatch.check` for every served tunnel when the desired state
arrives and every 15 s after, then sends what `worth_sending` keeps in a `status`. The check is
a bare TCP connect (a resolve for UDP); the protocol is spoken only when a tunnel is new here,
its target moved, or it came back after failing, so a target is not greeted every 15 s.

Checks of one tunnel run one at a time: desired states arriving close together (several
tunnels created at once) each start a check, and a target that serves one connection at a
time (iperf3, many embedded servers) must not be probed by several of them at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from portway.agent.dialer import Dialer, DialError
from portway.agent.probing import detect_target
from portway.wire.control_messages import Protocol, TargetStatus, TunnelSpec


class TargetWatch:
    def __init__(self, dialer: Dialer, on_state: Callable[[str, dict[str, Any]], None]) -> None:
        self._dialer = dialer
        self._on_state = on_state
        self.last: dict[str, TargetStatus] = {}  # without findings: what liveness last said
        # (host, port, protocol) each tunnel's protocol was last detected for.
        self._probed: dict[str, tuple[str, int, Protocol]] = {}
        self._checking: dict[str, asyncio.Lock] = {}

    async def check(self, spec: TunnelSpec) -> TargetStatus:
        """Whether `spec`'s target answers, with what it is when that had to be found out; a
        check while another of the same tunnel runs waits for it, and then usually finds the
        protocol known and speaks none."""
        async with self._checking.setdefault(spec.id, asyncio.Lock()):
            return await self._check(spec)

    async def _check(self, spec: TunnelSpec) -> TargetStatus:
        udp = spec.protocol is Protocol.UDP
        try:
            await (self._dialer.probe_udp if udp else self._dialer.probe)(spec.host, spec.port)
        except DialError as exc:
            self._on_state("target_error", {"tunnel": spec.name, "message": exc.message})
            return TargetStatus(spec.id, False, exc.reason, exc.message)
        key = (spec.host, spec.port, spec.protocol)
        previous = self.last.get(spec.id)
        if udp or (self._probed.get(spec.id) == key and (previous is None or previous.ok)):
            return TargetStatus(spec.id, True)
        detected = await detect_target(self._dialer, spec)
        if detected is not None:
            self._probed[spec.id] = key
            self._on_state("detected", {"tunnel": spec.name, "protocol": detected.protocol})
        return TargetStatus(spec.id, True, detected=detected)

    def worth_sending(self, targets: list[TargetStatus]) -> list[TargetStatus]:
        """Record `targets`; return those the hub has not heard: a finding, or a change."""
        changed = [t for t in targets if t.detected or self.last.get(t.tunnel) != t]
        for target in targets:
            self.last[target.tunnel] = dataclasses.replace(target, detected=None)
        return changed
