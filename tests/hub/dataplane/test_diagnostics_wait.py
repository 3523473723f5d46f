"""A diagnosis of a tunnel created a moment ago waits for it to reach its agent: woken by the
desired-state push and the agent's acknowledgement, bounded by `SETTLE_SECONDS`, never polling.

The agent's answer on the data channel is faked (`assign`); the real path is in
tests/e2e/test_probes.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any, cast

import pytest

from portway.domain.clock import FrozenClock
from portway.domain.detection import Report, Step
from portway.hub.core.presence import AgentPresence
from portway.hub.dataplane import diagnostics as diag
from portway.hub.dataplane import routes
from portway.hub.dataplane.certificates import TunnelCertificates
from portway.hub.dataplane.desired import DesiredStates
from portway.hub.dataplane.direct_grants import DirectGrants
from portway.hub.dataplane.registry import SessionRegistry
from portway.hub.dataplane.sessions import AgentSession
from portway.net.framed import FramedConnection
from portway.net.identity import HubIdentityCa
from portway.store import Database
from portway.wire.assignment_messages import Assign, AssignError, Diagnosis, DiagnosticStep
from portway.wire.codes import Reason
from portway.wire.control_messages import FEATURE_SERVE

AGENT = uuid.uuid4()
TUNNEL = uuid.uuid4()
ROUTE = routes.Route(
    id=TUNNEL, workspace_id=uuid.uuid4(), agent_id=AGENT, name="db", protocol="tcp",
    host="127.0.0.1", port=5432, public=False, hub_port=None, paused=False,
)  # fmt: skip
CLOSED = "this agent does not serve that tunnel"


class _Control:
    """The session's control connection: desired states are sent into the void."""

    def send(self, message: object) -> None:
        pass

    def close(self) -> None:
        pass


class _Channel:
    def close(self) -> None:
        pass


class Plane:
    """The parts of the data plane a diagnosis reads, with the agent's answers scripted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: list[str]) -> None:
        self.table = routes.RouteTable()
        self.sessions = SessionRegistry(AgentPresence())
        # No session here asks for end-to-end certificates, so no CA is ever used.
        unused_ca = cast(HubIdentityCa, None)
        self.desired = DesiredStates(
            self.table, self.sessions, TunnelCertificates(unused_ca, FrozenClock()), DirectGrants()
        )
        self.session = AgentSession(
            agent_id=AGENT, workspace_id=ROUTE.workspace_id, agent_name="laptop",
            control=cast(FramedConnection, _Control()), features=frozenset({FEATURE_SERVE}),
        )  # fmt: skip
        self.assigned: list[float] = []  # loop time of each assignment
        self._answers = answers

        async def assign(session: AgentSession, message: Assign, *, wait: float) -> Any:
            self.assigned.append(asyncio.get_running_loop().time())
            if self._answers.pop(0) == "closed":
                return _Channel(), AssignError(message.conn, Reason.CLOSED, CLOSED)
            step = DiagnosticStep("tcp", "ok", 1.0, "connected")
            return _Channel(), Diagnosis(message.conn, (step,), 2.0)

        monkeypatch.setattr(diag, "assign", assign)

        def spawn(coro: Coroutine[Any, Any, Any]) -> None:
            coro.close()

        self.diagnostics = diag.Diagnostics(
            db=cast(Database, None), clock=FrozenClock(), table=self.table,
            serving=self.sessions.serving, desired=self.desired, spawn=spawn,
        )  # fmt: skip

    def serve(self) -> None:
        """The tunnel reaches the snapshot and the agent's session connects: it is pushed."""
        self.table.snapshot = routes.Snapshot(routes={TUNNEL: ROUTE}, binds={}, agent_workspaces={})
        self.sessions.add(self.session)
        self.desired.push(self.session)

    def acknowledge(self) -> None:
        self.desired.acknowledged(self.session, self.session.revision)


async def _settle() -> None:
    """Let every ready task run until each waits on something (the fake plane does no I/O)."""
    for _ in range(50):
        await asyncio.sleep(0)


def _step(report: Report, name: str) -> Step:
    return next(s for s in report.steps if s.name == name)


async def test_a_tunnel_still_arriving_is_diagnosed_once_it_is_pushed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plane = Plane(monkeypatch, ["ok"])
    loop = asyncio.get_running_loop()
    started = loop.time()
    run = asyncio.create_task(plane.diagnostics.run(TUNNEL))
    await _settle()
    assert not run.done() and plane.assigned == []  # nothing to assign through yet
    plane.serve()
    report = await asyncio.wait_for(run, 1)
    assert _step(report, "agent").status == "ok" and _step(report, "tcp").status == "ok"
    assert len(plane.assigned) == 1 and plane.assigned[0] - started < 1


async def test_a_closed_answer_waits_for_the_agent_to_acknowledge_the_tunnel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plane = Plane(monkeypatch, ["closed", "ok"])
    plane.serve()
    run = asyncio.create_task(plane.diagnostics.run(TUNNEL))
    await _settle()
    assert not run.done() and len(plane.assigned) == 1
    plane.acknowledge()
    report = await asyncio.wait_for(run, 1)
    assert _step(report, "agent").status == "ok" and len(plane.assigned) == 2


async def test_a_closed_answer_after_the_acknowledgement_fails_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plane = Plane(monkeypatch, ["closed"])
    plane.serve()
    plane.acknowledge()
    report = await asyncio.wait_for(plane.diagnostics.run(TUNNEL), 1)
    assert _step(report, "agent").status == "fail" and _step(report, "agent").detail == CLOSED


async def test_an_offline_agent_fails_after_the_settle_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(diag, "SETTLE_SECONDS", 0.3)
    plane = Plane(monkeypatch, [])
    plane.table.snapshot = routes.Snapshot(routes={TUNNEL: ROUTE}, binds={}, agent_workspaces={})
    loop = asyncio.get_running_loop()
    started = loop.time()
    report = await asyncio.wait_for(plane.diagnostics.run(TUNNEL), 2)
    assert 0.3 <= loop.time() - started < 1
    agent = _step(report, "agent")
    assert agent.status == "fail" and "offline" in agent.detail and plane.assigned == []
