"""Probe findings on tunnels and the kept diagnostics runs (API and store; the real path is in
tests/e2e/test_probes.py)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from portway.api.context import ApiContext
from portway.domain.clock import FrozenClock
from portway.domain.detection import Report, Step
from portway.store import diagnostics
from tests.api.helpers import assert_error
from tests.api.tunnel_helpers import events, new_agent, new_tunnel

POSTGRES: dict[str, object] = {
    "protocol": "postgres",
    "version": None,
    "tls": None,
    "authRequired": False,
    "detail": "PostgreSQL, no TLS",
}
HTTPS: dict[str, object] = {
    "protocol": "https",
    "version": "nginx",
    "tls": {"subject": "CN=web", "issuer": "CN=ca", "notAfter": "2030-01-01T00:00:00Z",
            "version": "TLSv1.3"},
    "authRequired": False,
    "detail": "HTTPS 200",
}  # fmt: skip


async def _probe(ctx: ApiContext, tunnel_id: str, found: dict[str, Any]) -> bool:
    async with ctx.db.session() as session:
        return await diagnostics.record_probe(
            session, uuid.UUID(tunnel_id), found, now=ctx.clock.now()
        )


async def test_a_probe_finding_is_shown_and_recorded_once(
    api: httpx.AsyncClient, ctx: ApiContext
) -> None:
    agent = await new_agent(api)
    tunnel = await new_tunnel(api, agent, target="db:15432")
    assert tunnel["detectedProtocol"] is None and tunnel["probe"] is None
    assert await _probe(ctx, tunnel["id"], POSTGRES)
    assert not await _probe(ctx, tunnel["id"], POSTGRES)  # same finding: no second event
    shown = (await api.get(f"/v1/tunnels/{tunnel['id']}")).json()
    assert shown["detectedProtocol"] == "postgres" and shown["protocol"] == "tcp"
    assert shown["probe"]["detail"] == "PostgreSQL, no TLS" and shown["probe"]["mismatch"] is None
    assert shown["probe"]["probedAt"] is not None
    [event] = await events(ctx, "tunnel.updated")
    assert event.payload["changed"] == ["detectedProtocol"]
    assert event.payload["tunnel"]["detectedProtocol"] == "postgres"


async def test_auto_takes_https_but_an_explicit_protocol_reports_the_contradiction(
    api: httpx.AsyncClient, ctx: ApiContext
) -> None:
    agent = await new_agent(api)
    auto = await new_tunnel(api, agent, target="web:8080", public=True)
    explicit = await new_tunnel(api, agent, target="web:8081", protocol="http", public=True)
    assert auto["protocol"] == explicit["protocol"] == "http"
    await _probe(ctx, auto["id"], HTTPS)
    await _probe(ctx, explicit["id"], HTTPS)
    auto = (await api.get(f"/v1/tunnels/{auto['id']}")).json()
    explicit = (await api.get(f"/v1/tunnels/{explicit['id']}")).json()
    assert auto["protocol"] == "https" and auto["probe"]["mismatch"] is None
    assert auto["probe"]["tls"]["notAfter"] == "2030-01-01T00:00:00Z"
    assert explicit["protocol"] == "http"
    assert "set protocol to https" in explicit["probe"]["mismatch"]
    # An auto TCP tunnel keeps its transport; only its kind (connection string) follows.
    tcp = await new_tunnel(api, agent, target="box:9000")
    await _probe(ctx, tcp["id"], {**POSTGRES, "protocol": "redis", "detail": "Redis"})
    tcp = (await api.get(f"/v1/tunnels/{tcp['id']}")).json()
    assert tcp["protocol"] == "tcp" and tcp["detectedProtocol"] == "redis"


async def test_diagnostics_need_a_data_plane(api: httpx.AsyncClient) -> None:
    agent = await new_agent(api)
    tunnel = await new_tunnel(api, agent)
    assert_error(await api.post(f"/v1/tunnels/{tunnel['id']}/diagnostics"), 503)
    assert_error(await api.post(f"/v1/tunnels/{uuid.uuid4()}/diagnostics"), 404)


@dataclasses.dataclass
class ScriptedDiagnostics:
    """Stands in for the data plane's `Diagnostics` (`portway.services.Diagnoser`)."""

    script: Callable[[uuid.UUID], Awaitable[Report]]

    async def run(self, tunnel_id: uuid.UUID) -> Report:
        return await self.script(tunnel_id)


async def test_runs_are_kept_newest_first_and_capped_at_fifty(
    api: httpx.AsyncClient, ctx: ApiContext, clock: FrozenClock
) -> None:
    calls: list[uuid.UUID] = []

    async def diagnose(tunnel_id: uuid.UUID) -> Report:
        calls.append(tunnel_id)
        failed = len(calls) % 2 == 0
        steps = (
            Step("agent", "ok", 1.5, "agent answered"),
            Step("tcp", "fail" if failed else "ok", 0.4, "refused" if failed else "connected"),
        )
        return Report(steps, None if failed else 1.9, None if failed else POSTGRES)

    ctx.diagnostics = ScriptedDiagnostics(diagnose)
    agent = await new_agent(api)
    tunnel = await new_tunnel(api, agent)
    other = await new_tunnel(api, agent, target="localhost:6379")
    first = await api.post(f"/v1/tunnels/{tunnel['name']}/diagnostics")
    assert first.status_code == 201, first.text
    run = first.json()
    assert run["ok"] is True and run["latencyMs"] == 1.9 and run["tunnelId"] == tunnel["id"]
    assert [s["name"] for s in run["steps"]] == ["agent", "tcp"]
    assert run["detected"]["protocol"] == "postgres"
    for _ in range(54):
        clock.advance(seconds=1)
        assert (await api.post(f"/v1/tunnels/{tunnel['id']}/diagnostics")).status_code == 201
    await api.post(f"/v1/tunnels/{other['id']}/diagnostics")
    listed = (await api.get(f"/v1/tunnels/{tunnel['id']}/diagnostics")).json()["items"]
    assert len(listed) == diagnostics.KEPT_PER_TUNNEL
    times = [r["createdAt"] for r in listed]
    assert times == sorted(times, reverse=True)
    assert listed[0]["ok"] is True and listed[1]["ok"] is False  # 55th ran ok, 54th failed
    assert len((await api.get(f"/v1/tunnels/{other['id']}/diagnostics")).json()["items"]) == 1
    assert calls[0] == uuid.UUID(tunnel["id"])


@pytest.mark.parametrize("path", ["diagnostics"])
async def test_other_workspaces_cannot_diagnose(
    api: httpx.AsyncClient, other: httpx.AsyncClient, path: str
) -> None:
    agent = await new_agent(api)
    tunnel = await new_tunnel(api, agent)
    assert_error(await other.post(f"/v1/tunnels/{tunnel['id']}/{path}"), 404)
    assert_error(await other.get(f"/v1/tunnels/{tunnel['id']}/{path}"), 404)
