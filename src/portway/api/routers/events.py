"""`/v1/events`: the workspace's event log, as pages and as a live Server-Sent Events stream.

Every event has a `seq`, its position in the hub's log. `GET /v1/events` lists newest first;
with `after=<seq>` it lists oldest first from just after that position (to catch up). The
stream sends each new event as `id: <seq>`, `event: <type>`, `data: <JSON>`; a client that
reconnects with `Last-Event-ID` (or `?lastEventId=`) gets exactly the events it missed. It
sends a comment every 15 s to keep proxies from closing an idle connection, and ends when the
hub stops (`ApiContext.stopping`) so shutdown is never held up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from portway.api.auth import Auth, Ctx
from portway.api.context import ApiContext
from portway.api.problems import responses
from portway.api.schemas import Limit, Page
from portway.api.webhook_schemas import EventOut, EventType
from portway.store import event_feed
from portway.store.event_feed import EventTail
from portway.store.models import Event
from portway.store.seq_pages import MAX_SEQ

log = logging.getLogger("portway.api.events")

router = APIRouter(prefix="/v1/events", tags=["events"])

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
RETRY_MILLISECONDS = 3000

TypeFilter = Annotated[
    list[EventType] | None,
    Query(alias="type", description="Only these event types (repeat the parameter for more)"),
]


def event_out(event: Event) -> EventOut:
    return EventOut(
        seq=event.seq,
        id=event.id,
        type=event.type,
        object_id=event.object_id,
        created_at=event.created_at,
        data=event.payload,
    )


@router.get("", response_model=Page[EventOut], responses=responses())
async def list_events(
    *,
    auth: Auth,
    ctx: Ctx,
    type: TypeFilter = None,
    after: Annotated[
        int | None,
        Query(ge=0, le=MAX_SEQ, description="List oldest first, starting just after this `seq`"),
    ] = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> Page[EventOut]:
    """The workspace's events: newest first, or oldest first after the `seq` given as `after`.

    `nextCursor` continues in the same direction. To follow the log live, use
    `GET /v1/events/stream`.
    """
    async with ctx.db.session() as session:
        page = await event_feed.list_page(
            session, auth.workspace_id, types=type, limit=limit, cursor=cursor, after=after
        )
    return Page[EventOut](items=[event_out(e) for e in page.items], next_cursor=page.next_cursor)


class EventStreamResponse(StreamingResponse):
    media_type = "text/event-stream"


STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    **responses(),
    200: {
        "description": "A `text/event-stream`: `id: <seq>`, `event: <type>`, `data: <event JSON>`",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
}


def _frame(event: Event) -> str:
    data = event_out(event).model_dump_json(by_alias=True)
    return f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n"


async def _stream(
    ctx: ApiContext, workspace_id: uuid.UUID, position: int, types: list[str] | None
) -> AsyncIterator[str]:
    tail = EventTail(position)
    yield f"retry: {RETRY_MILLISECONDS}\n: connected at seq {position}\n\n"
    quiet_since = time.monotonic()
    while not ctx.stopping.is_set():
        try:
            # A client that leaves cancels this generator; the read is shielded so its
            # connection goes back to the pool properly instead of being cut mid-query.
            with anyio.CancelScope(shield=True):
                async with ctx.db.session() as session:
                    found = await tail.read(session, workspace_id=workspace_id, types=types)
        except Exception:
            # The client reconnects with Last-Event-ID and misses nothing.
            log.exception("reading events for a stream failed; ending it")
            return
        for event in found:
            yield _frame(event)
        if found:
            quiet_since = time.monotonic()
            continue
        if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ctx.stopping.wait(), POLL_SECONDS)


@router.get(
    "/stream",
    response_class=EventStreamResponse,
    responses=STREAM_RESPONSES,
)
async def stream_events(
    *,
    auth: Auth,
    ctx: Ctx,
    type: TypeFilter = None,
    last_event_id: Annotated[
        int | None,
        Header(alias="Last-Event-ID", ge=0, le=MAX_SEQ, description="Resume after this `seq`"),
    ] = None,
    last_event_id_query: Annotated[
        int | None,
        Query(
            alias="lastEventId",
            ge=0,
            le=MAX_SEQ,
            description="Like `Last-Event-ID`, for clients that "
            "cannot set headers; the header wins",
        ),
    ] = None,
) -> EventStreamResponse:
    """Follow the workspace's events live, as Server-Sent Events.

    Without `Last-Event-ID` the stream starts with the next event; with it, it first sends
    every event after that `seq`. Each message's `id` is the event's `seq`.
    """
    resume = last_event_id if last_event_id is not None else last_event_id_query
    if resume is None:
        async with ctx.db.session() as session:
            resume = await event_feed.latest_seq(session)
    return EventStreamResponse(
        _stream(ctx, auth.workspace_id, resume, type),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
