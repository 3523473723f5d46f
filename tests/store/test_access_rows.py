"""Share access-log rows written through the driver read back like rows the ORM wrote, on
SQLite and PostgreSQL: same stored forms, same counts, one transaction, integrity errors kept."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError

from portway.api.context import ApiContext
from portway.domain.clock import FrozenClock
from portway.store import shares
from portway.store.models import Share, ShareAccessLog
from tests.api.tunnel_helpers import new_agent, new_share, new_tunnel


def access(share: Share, at: Any, i: int, **fields: Any) -> shares.Access:
    values: dict[str, Any] = {
        "share_id": share.id, "workspace_id": share.workspace_id, "at": at,
        "remote_addr": f"203.0.113.{i}", "method": "GET", "path": f"/p/{i}", "status": 200,
        "allowed": True, "reason": None, "user_agent": "curl/8", "bytes_in": 0,
        "bytes_out": 10 * i, "latency_ms": 1.5,
    }  # fmt: skip
    values.update(fields)
    return shares.Access(**values)


@pytest.fixture
async def share(api: httpx.AsyncClient, ctx: ApiContext) -> Share:
    tunnel = await new_tunnel(api, await new_agent(api, "web-agent"), target="localhost:3000")
    made = await new_share(api, tunnel["id"])
    async with ctx.db.session() as session:
        found = await session.get(Share, uuid.UUID(made["id"]))
        assert found is not None
        return found


async def test_rows_read_back_as_the_orm_wrote_them(
    share: Share, ctx: ApiContext, clock: FrozenClock
) -> None:
    at = clock.now()
    batch = [
        access(share, at, 1),
        access(share, at + timedelta(microseconds=1), 2, status=403, allowed=False,
               reason="path_not_allowed", bytes_in=None, bytes_out=None, latency_ms=None),
        access(share, at + timedelta(seconds=1), 3, path="/" + "x" * 5000, user_agent=None),
    ]  # fmt: skip
    async with ctx.db.session() as session:
        await shares.record_accesses(session, batch)
        await session.execute(insert(ShareAccessLog), [{  # the ORM's own row, to compare with
            "id": uuid.uuid4(), "workspace_id": share.workspace_id, "share_id": share.id,
            "created_at": at + timedelta(seconds=2), "remote_addr": "orm", "method": "GET",
            "path": "/orm", "status_code": 200, "allowed": True,
        }])  # fmt: skip
    async with ctx.db.session() as session:
        rows = (
            await session.scalars(
                select(ShareAccessLog)
                .where(ShareAccessLog.share_id == share.id)
                .order_by(ShareAccessLog.created_at)
            )
        ).all()
        stored = (
            await session.execute(
                text("SELECT remote_addr, created_at, share_id FROM share_access_logs")
            )
        ).all()
        counted = await session.get(Share, share.id, populate_existing=True)
    assert [r.remote_addr for r in rows] == ["203.0.113.1", "203.0.113.2", "203.0.113.3", "orm"]
    first, denied, long, _ = rows
    assert first.created_at == at and first.allowed is True and first.bytes_out == 10
    assert first.latency_ms == 1.5 and first.user_agent == "curl/8"
    assert denied.created_at == at + timedelta(microseconds=1)
    assert (denied.allowed, denied.reason, denied.bytes_in, denied.status_code) == (
        False, "path_not_allowed", None, 403,
    )  # fmt: skip
    assert long.path is not None and len(long.path) == 2048 and long.user_agent is None
    # The stored forms (SQLite keeps text) are those of the row the ORM wrote.
    forms = {addr: (type(created), len(str(created)), type(sid)) for addr, created, sid in stored}
    assert forms["203.0.113.1"][0] is forms["orm"][0] and forms["203.0.113.1"][2] is forms["orm"][2]
    if ctx.db.dialect == "sqlite":
        assert forms["203.0.113.1"][1] == forms["orm"][1]
    assert counted is not None and counted.access_count == 2  # the denied one is not counted
    assert counted.last_accessed_at == at + timedelta(seconds=1)


async def test_a_failed_batch_leaves_nothing_and_a_deleted_share_is_an_integrity_error(
    share: Share, ctx: ApiContext, clock: FrozenClock
) -> None:
    gone = access(share, clock.now(), 9, share_id=uuid.uuid4())
    with pytest.raises(IntegrityError):
        async with ctx.db.session() as session:
            await shares.record_accesses(session, [access(share, clock.now(), 1), gone])
    async with ctx.db.session() as session:
        left = (await session.scalars(select(ShareAccessLog.id))).all()
        counted = await session.get(Share, share.id, populate_existing=True)
    assert left == [] and counted is not None and counted.access_count == 0
