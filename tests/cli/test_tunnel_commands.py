"""`portway tunnels` and `portway shares` against a real hub on loopback."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx
import pytest

from portway.store import shares as share_store
from portway.testing.hub import HubThread
from tests.cli.helpers import json_of, new_agent, new_tunnel, run, suffix

pytestmark = pytest.mark.usefixtures("logged_in")


def test_tunnels_ls_and_filters(api: httpx.Client) -> None:
    s = suffix()
    laptop, server = new_agent(api, f"laptop-{s}"), new_agent(api, f"server-{s}")
    pg = new_tunnel(api, laptop, name=f"pg-{s}")
    web = new_tunnel(api, server, name=f"web-{s}", target="localhost:8080", public=True)
    dns = new_tunnel(api, server, name=f"dns-{s}", target="[::1]:53", protocol="udp")
    api.patch(f"/v1/tunnels/{dns['id']}", json={"status": "paused"})

    listed = json_of(run("tunnels", "ls", "--json"))
    assert {pg["id"], web["id"], dns["id"]} <= {t["id"] for t in listed}
    table = run("tunnels", "ls").output
    assert pg["id"] in table and f"pg-{s}" in table and "localhost:5432" in table
    assert web["publicUrl"] in table and "[::1]:53" in table
    by_agent = json_of(run("tunnels", "ls", "--agent", f"server-{s}", "--json"))
    assert {t["name"] for t in by_agent} == {f"web-{s}", f"dns-{s}"}
    by_agent_id = json_of(run("tunnels", "ls", "--agent", laptop, "--json"))
    assert [t["name"] for t in by_agent_id] == [f"pg-{s}"]
    paused = json_of(run("tunnels", "ls", "--status", "paused", "--agent", server, "--json"))
    assert [t["name"] for t in paused] == [f"dns-{s}"]
    udp = json_of(run("tunnels", "ls", "--protocol", "udp", "--json"))
    assert f"dns-{s}" in [t["name"] for t in udp] and f"pg-{s}" not in [t["name"] for t in udp]
    refused = run("tunnels", "ls", "--status", "running", ok=False)
    assert refused.exit_code == 2 and "running" in refused.output
    missing = run("tunnels", "ls", "--agent", f"nobody-{s}", ok=False)
    assert missing.exit_code == 1 and missing.output == "error: agent not found\n"
    idle = new_agent(api, f"idle-{s}")
    assert run("tunnels", "ls", "--agent", idle).output == "(none)\n"
    assert json_of(run("tunnels", "ls", "--agent", idle, "--json")) == []


def test_tunnel_show_pause_resume_rename_rm(api: httpx.Client) -> None:
    s = suffix()
    agent = new_agent(api, f"exposer-{s}")
    tunnel = new_tunnel(api, agent, name=f"db-{s}", metadata={"team": "data"}, expiresIn="7d")

    shown = run("tunnels", "show", f"db-{s}").output
    for expected in (tunnel["id"], "connecting", "localhost:5432", "tcp (requested auto)",
                     '{"team": "data"}', "0 open, 0 total", "0 B in, 0 B out"):  # fmt: skip
        assert expected in shown, (expected, shown)
    as_json = json_of(run("tunnels", "show", tunnel["id"], "--json"))
    # The hub's data plane may have added a statusReason meanwhile; the rest is as created.
    assert {k: v for k, v in as_json.items() if k not in ("statusReason", "updatedAt")} == {
        k: v for k, v in tunnel.items() if k not in ("statusReason", "updatedAt")
    }

    paused = run("tunnels", "pause", f"db-{s}").output
    assert paused == f"Paused tunnel db-{s}; 'portway tunnels resume' brings it back.\n"
    assert api.get(f"/v1/tunnels/{tunnel['id']}").json()["status"] == "paused"
    assert json_of(run("tunnels", "pause", tunnel["id"], "--json"))["status"] == "paused"
    resumed = json_of(run("tunnels", "resume", tunnel["id"], "--json"))
    assert resumed["status"] == "connecting"
    again = run("tunnels", "resume", tunnel["id"]).output
    assert again.startswith(f"Resumed tunnel db-{s} (status: connecting") and again.endswith(").\n")

    moved = json_of(run("tunnels", "rename", f"db-{s}", f"store-{s}", "--json"))
    assert (moved["id"], moved["name"]) == (tunnel["id"], f"store-{s}")
    renamed = run("tunnels", "rename", f"store-{s}", f"warehouse-{s}").output
    assert renamed == f"Renamed tunnel store-{s} to warehouse-{s}.\n"
    clash = new_tunnel(api, agent, name=f"other-{s}")
    taken = run("tunnels", "rename", f"warehouse-{s}", clash["name"], ok=False)
    assert taken.exit_code == 1 and "already exists" in taken.output
    invalid = run("tunnels", "rename", f"warehouse-{s}", "has space", ok=False)
    assert invalid.exit_code == 1 and invalid.output.startswith("error: name:")

    removed = run("tunnels", "rm", f"warehouse-{s}").output
    assert removed == (
        f"Removed tunnel warehouse-{s} ({tunnel['id']}); its connections and shares are gone.\n"
    )
    assert api.get(f"/v1/tunnels/{tunnel['id']}").status_code == 404
    gone = run("tunnels", "show", f"warehouse-{s}", ok=False)
    assert gone.exit_code == 1 and gone.output == "error: tunnel not found\n"
    assert json_of(run("tunnels", "rm", clash["id"], "--json")) == {"deleted": clash["id"]}


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

    of_site = json_of(run("shares", "ls", "--tunnel", f"site-{s}", "--json"))
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
    assert revoked == f"Revoked share Preview ({share['id']}); its link no longer works.\n"
    assert json_of(run("shares", "show", share["id"], "--json"))["status"] == "revoked"
    assert json_of(run("shares", "revoke", share["id"], "--json"))["status"] == "revoked"
    active = json_of(run("shares", "ls", "--status", "active", "--tunnel", f"site-{s}", "--json"))
    assert active == []
    missing = run("shares", "show", str(uuid.uuid4()), ok=False)
    assert missing.exit_code == 1 and missing.output == "error: share not found\n"


def test_share_prints_the_link_once(api: httpx.Client, hub: HubThread) -> None:
    s = suffix()
    agent = new_agent(api, f"linker-{s}")
    new_tunnel(api, agent, name=f"page-{s}", target="localhost:3000")
    new_tunnel(api, agent, name=f"cache-{s}", target="localhost:6379")
    once = "The link is shown only once; revoke it with 'portway shares revoke ID'."
    edge = run("share", f"page-{s}", "--name", "Page").output.splitlines()
    share_id, url = edge[0].split()[2].strip("()"), edge[3].removeprefix("URL      ")
    assert re.fullmatch(r"http://\S+/s/pws_\S+/", url), edge
    expires = api.get(f"/v1/shares/{share_id}").json()["expiresAt"]
    assert edge == [
        f"share    Page ({share_id})", f"tunnel   page-{s}", f"expires  {expires}",
        f"URL      {url}", once,
    ]  # fmt: skip
    join = run("share", f"cache-{s}", "--expires", "never").output.splitlines()
    url = join[3].removeprefix("join link   ")
    assert url.startswith(f"{hub.api_url}/v1/join/pws_"), join
    assert join[1:] == [
        f"tunnel      cache-{s}", "expires     never", f"join link   {url}",
        f"guest runs  portway join {url}", once,
    ]  # fmt: skip
    created = json_of(run("share", f"cache-{s}", "--rate-limit", "5", "--json"))
    assert created["token"].startswith("pws_") and created["shareUrl"].endswith(created["token"])
    assert created["name"] == f"cache-{s}" and created["rateLimit"] == 5


def test_check_shows_each_step_and_fails_with_1(api: httpx.Client) -> None:
    s = suffix()
    new_tunnel(api, new_agent(api, f"asleep-{s}"), name=f"down-{s}")
    shown = run("check", f"down-{s}", ok=False)
    assert shown.exit_code == 1 and shown.stderr == ""
    header, step = [line.split() for line in shown.stdout.splitlines()]
    assert header == ["STEP", "RESULT", "TIME", "DETAIL"]
    assert step[:3] == ["agent", "FAIL", "-"]  # the detail: not served yet, or agent offline
    failed = run("check", f"down-{s}", "--json", ok=False)
    assert failed.exit_code == 1
    diagnosis = json_of(failed)
    assert diagnosis["ok"] is False and [x["name"] for x in diagnosis["steps"]] == ["agent"]
    history = json_of(run("check", f"down-{s}", "--history", "--json"))
    assert [r["id"] for r in history][:1] == [diagnosis["id"]] and len(history) == 2
    table = run("check", f"down-{s}", "--history").stdout.splitlines()
    assert table[0].split() == ["WHEN", "RESULT", "LATENCY", "FAILED", "STEP"]
    assert len(table) == 3 and all(" FAIL " in row and "agent: " in row for row in table[1:])


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
    limited = json_of(run("shares", "logs", share["id"], "--limit", "2", "--json"))
    assert len(limited) == 2
    bad = run("shares", "logs", share["id"], "--limit", "0", ok=False)
    assert bad.exit_code == 2
