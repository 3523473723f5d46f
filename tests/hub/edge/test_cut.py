"""The edge's sweep of live share traffic against a real store with a frozen clock:
`Router.unusable()` names revoked, expired, deleted and paused shares in one query, and
`LiveShares.sweep()` cuts exactly the exchanges of those shares."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from portway.api.context import ApiContext
from portway.domain.clock import FrozenClock
from portway.hub.dataplane import routes
from portway.hub.edge.cut import LiveShares
from portway.hub.edge.router import Deny, Router
from tests.api.tunnel_helpers import new_agent, new_tunnel


class FakeExchange:
    def __init__(self) -> None:
        self.cuts: list[Deny] = []

    def cut(self, why: Deny) -> None:
        self.cuts.append(why)


async def shares_of_new_tunnel(api: httpx.AsyncClient, count: int, **policy: Any) -> list[Any]:
    agent = await new_agent(api)
    tunnel = await new_tunnel(api, agent, target="localhost:8080", protocol="http", public=True)
    made = []
    for i in range(count):
        created = await api.post(
            f"/v1/tunnels/{tunnel['id']}/shares", json={"name": f"s{i}", **policy}
        )
        assert created.status_code == 201, created.text
        made.append(created.json())
    return made


async def snapshot_router(ctx: ApiContext) -> Router:
    async with ctx.db.session() as session:
        snap = await routes.load(session)
    return Router(ctx.db, ctx.clock, routes.RouteTable(snap), "localhost")


async def test_unusable_names_revoked_expired_deleted_and_paused_shares(
    api: httpx.AsyncClient, ctx: ApiContext, clock: FrozenClock
) -> None:
    kept, revoked = await shares_of_new_tunnel(api, 2, expiresIn="never")
    [expiring] = await shares_of_new_tunnel(api, 1, expiresIn="1h")
    [paused] = await shares_of_new_tunnel(api, 1)
    made = {"kept": kept, "revoked": revoked, "expiring": expiring, "paused": paused}
    ids = {name: uuid.UUID(created["id"]) for name, created in made.items()}
    ids["deleted"] = uuid.uuid4()
    router = await snapshot_router(ctx)
    assert set(await router.unusable(list(ids.values()))) == {ids["deleted"]}
    assert (await api.delete(f"/v1/shares/{revoked['id']}")).status_code == 204
    await api.patch(f"/v1/tunnels/{paused['tunnelId']}", json={"status": "paused"})
    clock.advance(hours=1)
    router = await snapshot_router(ctx)
    found = await router.unusable(list(ids.values()))
    assert {k: (found[v].status, found[v].code) for k, v in ids.items() if v in found} == {
        "revoked": (410, "share_revoked"),
        "expiring": (410, "share_expired"),
        "paused": (503, "tunnel_paused"),
        "deleted": (404, "share_not_found"),
    }
    assert found[ids["revoked"]].share is not None


async def test_sweep_cuts_only_the_exchanges_of_unusable_shares(
    api: httpx.AsyncClient, ctx: ApiContext
) -> None:
    kept, revoked = await shares_of_new_tunnel(api, 2)
    live = LiveShares(await snapshot_router(ctx))
    exchanges = {name: [FakeExchange(), FakeExchange()] for name in ("kept", "revoked")}
    for name, created in (("kept", kept), ("revoked", revoked)):
        for exchange in exchanges[name]:
            live.add(uuid.UUID(created["id"]), exchange)
    assert await live.sweep() == 0
    assert (await api.delete(f"/v1/shares/{revoked['id']}")).status_code == 204
    assert await live.sweep() == 2
    assert [len(e.cuts) for e in exchanges["revoked"]] == [1, 1]
    assert exchanges["revoked"][0].cuts[0].code == "share_revoked"
    assert all(not e.cuts for e in exchanges["kept"])
    # Ended exchanges leave the registry; an empty registry costs no query.
    for exchange in exchanges["revoked"] + exchanges["kept"]:
        share_id = uuid.UUID((revoked if exchange in exchanges["revoked"] else kept)["id"])
        live.discard(share_id, exchange)
    assert live.by_share == {}
    assert await live.sweep() == 0
