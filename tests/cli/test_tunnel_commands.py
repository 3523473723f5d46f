"""`portway tunnels` and `portway shares` against a real hub on loopback."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest

from portway.store import shares as share_store
from portway.testing.hub import HubThread
from tests.cli.helpers import new_agent, new_tunnel, run, suffix

pytestmark = pytest.mark.usefixtures("logged_in")


def test_tunnels_ls_and_filters(api: httpx.Client) -> None:
    s = suffix()
    laptop, server = new_agent(api, f"laptop-{s}"), new_agent(api, f"server-{s}")
    pg = new_tunnel(api, laptop, name=f"pg-{s}")
    web = new_tunnel(api, server, name=f"web-{s}", target="localhost:8080", public=True)
    dns = new_tunnel(api, server, name=f"dns-{s}", target="[::1]:53", protocol="udp")
    api.patch(f"/v1/tunnels/{dns['id']}", json={"status": "paused"})

    listed = json.loads(run("tunnels", "ls", "--json").output)
    assert {pg["id"], web["id"], dns["id"]} <= {t["id"] for t in listed}
    table = run("tunnels", "ls").output
    assert pg["id"] in table and f"pg-{s}" in table and "localhost:5432" in table
    assert web["publicUrl"] in table and "[::1]:53" in table
    by_agent = json.loads(run("tunnels", "ls", "--agent", f"server-{s}", "--json").output)
    assert {t["name"] for t in by_agent} == {f"web-{s}", f"dns-{s}"}
    by_agent_id = json.loads(run("tunnels", "ls", "--agent", laptop, "--json").output)
    assert [t["name"] for t in by_agent_id] == [f"pg-{s}"]
    paused = json.loads(
        run("tunnels", "ls", "--status", "paused", "--agent", server, "--json").output
    )
    assert [t["name"] for t in paused] == [f"dns-{s}"]
    udp = json.loads(run("tunnels", "ls", "--protocol", "udp", "--json").output)
    assert f"dns-{s}" in [t["name"] for t in udp] and f"pg-{s}" not in [t["name"] for t in udp]
    refused = run("tunnels", "ls", "--status", "running", ok=False)
    assert refused.exit_code == 2 and "running" in refused.output
    missing = run("tunnels", "ls", "--agent", f"nobody-{s}", ok=False)
    assert missing.exit_code == 1 and missing.output == "error: agent not found\n"


def test_tunnel_show_pause_resume_rename_rm(api: httpx.Client) -> None:
    s = suffix()
    agent = new_agent(api, f"exposer-{s}")
    tunnel = new_tunnel(api, agent, name=f"db-{s}", metadata={"team": "data"}, expiresIn="7d")

    shown = run("tunnels", "show", f"db-{s}").output
    for expected in (tunnel["id"], "connecting", "localhost:5432", "tcp (requested auto)",
                     '{"team": "data"}', "0 open, 0 total", "0 B in, 0 B out"):  # fmt: skip
        assert expected in shown, (expected, shown)
    as_json = json.loads(run("tunnels", "show", tunnel["id"], "--json").output)
    # The hub's data plane may have added a statusReason meanwhile; the rest is as created.
    assert {k: v for k, v in as_json.items() if k not in ("statusReason", "updatedAt")} == {
        k: v for k, v in tunnel.items() if k not in ("statusReason", "updatedAt")
    }

    assert f"Paused tunnel db-{s}" in run("tunnels", "pause", f"db-{s}").output
    assert api.get(f"/v1/tunnels/{tunnel['id']}").json()["status"] == "paused"
    resumed = run("tunnels", "resume", tunnel["id"], "--json").output
    assert json.loads(resumed)["status"] == "connecting"
    assert "status: connecting" in run("tunnels", "resume", tunnel["id"]).output

    renamed = run("tunnels", "rename", f"db-{s}", f"warehouse-{s}").output
    assert renamed == f"Renamed tunnel db-{s} to warehouse-{s}.\n"
    clash = new_tunnel(api, agent, name=f"other-{s}")
    taken = run("tunnels", "rename", f"warehouse-{s}", clash["name"], ok=False)
    assert taken.exit_code == 1 and "already exists" in taken.output
    invalid = run("tunnels", "rename", f"warehouse-{s}", "has space", ok=False)
    assert invalid.exit_code == 1 and invalid.output.startswith("error: name:")

    removed = run("tunnels", "rm", f"warehouse-{s}").output
    assert f"Removed tunnel warehouse-{s} ({tunnel['id']})" in removed
    assert api.get(f"/v1/tunnels/{tunnel['id']}").status_code == 404
    gone = run("tunnels", "show", f"warehouse-{s}", ok=False)
    assert gone.exit_code == 1 and gone.output == "error: tunnel not found\n"
    assert json.loads(run("tunnels", "rm", clash["id"], "--json").output) == {
        "deleted": clash["id"]
    }


def test_shares_ls_show_revoke(api: httpx.Client) -> None:
    s = suffix()
    agent = new_agent(api, f"sharer-{s}")
    web = new_tunnel(api, agent, name=f"site-{s}", target="localhost:3000")
    db = new_tunnel(api, agent, name=f"pg-{s}")
    share = api.post(
        f"/v1/tunnels/{web['id']}/shares",
        json={"name": "Preview", "allowedMethods": ["GET"], "rateLimit": 30, "expiresIn": "7d"},
    ).json()
    other = api.post(f"/v1/tunnels/{db['id']}/shares", json={"name": "DBA"}).json()

    of_site = json.loads(run("shares", "ls", "--tunnel", f"site-{s}", "--json").output)
    assert [x["id"] for x in of_site] == [share["id"]]
    assert all("token" not in x for x in of_site)
    table = run("shares", "ls").output
    assert share["id"] in table and other["id"] in table and f"site-{s}" in table
    assert share["tokenPrefix"] in table and share["token"] not in table

    shown = run("shares", "show", share["id"]).output
    for expected in ("Preview", "active", "GET", "30/min", share["tokenPrefix"]):
        assert expected in shown, (expected, shown)
    assert "paths" in shown and "all" in shown

    revoked = run("shares", "revoke", share["id"]).output
    assert revoked.startswith(f"Revoked share Preview ({share['id']})")
    assert json.loads(run("shares", "show", share["id"], "--json").output)["status"] == "revoked"
    assert json.loads(run("shares", "revoke", share["id"], "--json").output)["status"] == "revoked"
    active = json.loads(
        run("shares", "ls", "--status", "active", "--tunnel", f"site-{s}", "--json").output
    )
    assert active == []
    missing = run("shares", "show", str(uuid.uuid4()), ok=False)
    assert missing.exit_code == 1 and missing.output == "error: share not found\n"


def test_share_logs(api: httpx.Client, hub: HubThread) -> None:
    s = suffix()
    agent = new_agent(api, f"logger-{s}")
    web = new_tunnel(api, agent, name=f"app-{s}", target="localhost:3000")
    share = api.post(f"/v1/tunnels/{web['id']}/shares", json={"name": "Logged"}).json()
    assert run("shares", "logs", share["id"]).output == "(none)\n"
    workspace = uuid.UUID(api.get("/v1/hub").json()["workspace"]["id"])

    async def record() -> None:
        # Stands in for the edge, which writes these rows on the hub's own loop.
        db = hub.hub.db
        assert db is not None
        async with db.session() as session:
            row = await share_store.get(session, workspace, uuid.UUID(share["id"]))
            await share_store.record_accesses(session, [
                share_store.Access(
                    share_id=row.id, workspace_id=row.workspace_id, at=hub.hub.clock.now(),
                    remote_addr=f"198.51.100.{i}", method="GET", path=f"/p{i}",
                    status=200 if i != 1 else 429, allowed=i != 1,
                    reason=None if i != 1 else "rate_limited", user_agent=None,
                )
                for i in range(3)
            ])  # fmt: skip

    asyncio.run_coroutine_threadsafe(record(), hub._loop).result(timeout=30)
    logs = run("shares", "logs", share["id"]).output
    assert "198.51.100.1" in logs and "denied (rate_limited)" in logs and "GET /p2" in logs
    limited = json.loads(run("shares", "logs", share["id"], "--limit", "2", "--json").output)
    assert len(limited) == 2
    bad = run("shares", "logs", share["id"], "--limit", "0", ok=False)
    assert bad.exit_code == 2
