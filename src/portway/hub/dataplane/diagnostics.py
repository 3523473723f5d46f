"""Diagnoses through the real path, and the probe findings agents report.

`DataPlane` owns one `Diagnostics`: it hands every agent `status` to `on_status` (findings are
stored on the tunnel) and the API's `POST /v1/tunnels/{id}/diagnostics` awaits `run`, which
assigns one of the exposing agent's pooled data channels with `mode: diagnose` — the same hub →
agent channel a visitor would get — and turns the agent's answer into a `detection.Report`.
A tunnel created a moment ago is waited for (`DesiredStates` says when it reaches its agent).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from portway.domain.clock import Clock
from portway.domain.detection import Report, Step
from portway.hub.dataplane import routes
from portway.hub.dataplane.desired import DesiredStates
from portway.hub.dataplane.sessions import AgentSession, NoChannel, assign
from portway.store import Database
from portway.store import diagnostics as store
from portway.wire.assignment_messages import Assign, AssignError, AssignMode, Diagnosis
from portway.wire.codes import Reason
from portway.wire.control_messages import Detected, Protocol, Status

log = logging.getLogger("portway.hub.diagnostics")

# The agent bounds its own steps (resolve, connect and each probe) to a few seconds each.
DIAGNOSE_TIMEOUT = 30.0
SETTLE_SECONDS = 3.0
NOT_SERVED_YET = "this hub does not serve the tunnel yet; try again shortly"


def probe_fields(found: Detected) -> dict[str, Any]:
    """A probe finding in the API's field names (stored on the tunnel and with each run)."""
    tls = None
    if found.tls_not_after is not None:
        tls = {
            "subject": found.tls_subject, "issuer": found.tls_issuer,
            "notAfter": found.tls_not_after, "version": found.tls_version,
        }  # fmt: skip
    return {
        "protocol": found.protocol,
        "version": found.version,
        "tls": tls,
        "authRequired": found.auth_required,
        "detail": found.detail,
    }


@dataclass(frozen=True, slots=True)
class _NotYet:
    """A reason that may pass by itself within `SETTLE_SECONDS` (a tunnel still arriving): the
    run waits for the next change of desired states (`DesiredStates.changed`) and tries again."""

    why: str


def _failed(name: str, detail: str) -> Report:
    return Report((Step(name, "fail", None, detail),), None, None)


async def _before(event: asyncio.Event, deadline: float) -> bool:
    """Wait for `event` until the loop's clock reads `deadline`; whether it was set in time."""
    if asyncio.get_running_loop().time() >= deadline:
        return False
    try:
        async with asyncio.timeout_at(deadline):
            await event.wait()
    except TimeoutError:
        return False
    return True


class Diagnostics:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        table: routes.RouteTable,
        serving: Callable[[uuid.UUID], list[AgentSession]],
        desired: DesiredStates,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self._db = db
        self._clock = clock
        self._table = table
        self._serving = serving
        self._desired = desired
        self._spawn = spawn

    def on_status(self, status: Status) -> None:
        """Store the probe findings an agent's `status` carries (most carry none)."""
        for target in status.targets:
            if target.detected is not None:
                try:
                    tunnel_id = uuid.UUID(target.tunnel)
                except ValueError:
                    continue
                self._spawn(self._record(tunnel_id, target.detected))

    async def _record(self, tunnel_id: uuid.UUID, found: Detected) -> None:
        try:
            async with self._db.session() as db:
                await store.record_probe(db, tunnel_id, probe_fields(found), now=self._clock.now())
        except Exception:
            log.exception("storing a probe finding failed", extra={"tunnel": str(tunnel_id)})

    def _session(self, tunnel_id: uuid.UUID) -> tuple[routes.Route, AgentSession] | str | _NotYet:
        """The route and the agent session to diagnose it through, or why there is none.

        Only a session this hub has pushed the tunnel to qualifies. The agent takes it on
        receipt, though an assignment on a data channel may reach it first (see `_attempt`)."""
        route = self._table.snapshot.routes.get(tunnel_id)
        if route is None:
            return _NotYet(NOT_SERVED_YET)
        if route.paused:
            return f"tunnel {route.name} is paused: resume it to diagnose it"
        serving = self._serving(route.agent_id)
        if not serving:
            return _NotYet(
                f"the exposing agent is offline: no session of it serves {route.name} here; "
                "start `portway up` (or `portway expose`) on its machine"
            )
        told = [s for s in serving if self._desired.sent(s, route.spec())]
        if not told:
            return _NotYet(NOT_SERVED_YET)
        return route, min(told, key=lambda s: s.load)

    async def run(self, tunnel_id: uuid.UUID) -> Report:
        """Diagnose a tunnel now; never raises for what the path does, only reports it.

        A tunnel created a moment ago may not have reached this hub's snapshot or its agent's
        desired state yet (a CI job creates and checks at once): the run waits for that, woken
        by each desired-state push and each newly acknowledged revision, for up to
        `SETTLE_SECONDS` before it counts as a failure.
        """
        deadline = asyncio.get_running_loop().time() + SETTLE_SECONDS
        while True:
            change = self._desired.changed()  # taken first: a change during the attempt counts
            result = await self._attempt(tunnel_id)
            if not isinstance(result, _NotYet):
                return result
            if not await _before(change, deadline):
                return _failed("agent", result.why)

    async def _attempt(self, tunnel_id: uuid.UUID) -> Report | _NotYet:
        found = self._session(tunnel_id)
        if not isinstance(found, tuple):
            return found if isinstance(found, _NotYet) else _failed("agent", found)
        route, session = found
        message = Assign(
            conn=uuid.uuid4().hex, mode=AssignMode.DIAGNOSE, tunnel=str(route.id),
            protocol=Protocol(route.protocol), host=route.host, port=route.port,
        )  # fmt: skip
        started = time.perf_counter()
        try:
            channel, answer = await assign(session, message, wait=DIAGNOSE_TIMEOUT)
        except NoChannel as exc:
            return _failed("agent", f"{exc}; check the agent's machine and its logs")
        total_ms = (time.perf_counter() - started) * 1000
        channel.close()
        if isinstance(answer, AssignError):
            why = answer.message or "the agent refused the diagnosis"
            if answer.reason is Reason.CLOSED and not self._desired.applied(session, route.spec()):
                return _NotYet(why)  # the desired state carrying it may not have arrived yet
            return _failed("agent", why)
        if not isinstance(answer, Diagnosis):
            return _failed("agent", "the agent is too old to diagnose: upgrade Portway on it")
        if answer.detected is not None:
            self._spawn(self._record(route.id, answer.detected))
        return self._report(session, answer, total_ms)

    @staticmethod
    def _report(session: AgentSession, answer: Diagnosis, total_ms: float) -> Report:
        hub_agent = round(max(total_ms - answer.elapsed_ms, 0.0), 2)
        steps = [Step("agent", "ok", hub_agent, f"{session.agent_name} answered on a data channel")]
        steps += [Step(s.name, s.status, s.ms, s.detail) for s in answer.steps]
        tcp = next((s for s in answer.steps if s.name == "tcp" and s.status == "ok"), None)
        latency = None
        if tcp is not None and tcp.ms is not None:
            latency = round(hub_agent + tcp.ms, 2)
            detail = f"hub ↔ agent {hub_agent} ms + agent ↔ target {tcp.ms} ms"
            steps.append(Step("latency", "ok", latency, detail))
        else:
            steps.append(Step("latency", "skip", None, "no TCP connection to the target was timed"))
        detected = probe_fields(answer.detected) if answer.detected is not None else None
        return Report(tuple(steps), latency, detected)
