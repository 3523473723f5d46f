"""`portway events`: the workspace's event log, and `--follow` to watch it live (SSE)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import islice
from typing import Any

import click
import httpx

from portway import __version__
from portway.cli.common import ApiOptions, api_options
from portway.client import error_from_response
from portway.domain.backoff import Backoff
from portway.domain.event_kinds import EVENT_TYPES

# Longer than the hub's 15 s keep-alive, so a dead connection is noticed and resumed.
STREAM_READ_TIMEOUT = 45.0


def _summary(event: dict[str, Any]) -> str:
    data = event["data"]
    for kind in ("tunnel", "share", "webhook"):
        if isinstance(data.get(kind), dict):
            obj = data[kind]
            name = obj.get("name") or obj.get("url") or ""
            return f"{name} {obj.get('status') or ''}".strip()
    if isinstance(data.get("connection"), dict):
        return f"localhost:{data['connection'].get('localPort')}"
    return str(data.get("name") or "")


def _text(event: dict[str, Any]) -> str:
    """One event as one line for people."""
    at = datetime.fromisoformat(event["createdAt"].replace("Z", "+00:00")).astimezone()
    reason = event["data"].get("reason")
    line = f"{at:%Y-%m-%d %H:%M:%S}  #{event['seq']}  {event['type']:<22} {event['objectId']}"
    extra = " ".join(p for p in (_summary(event), f"({reason})" if reason else "") if p)
    return f"{line}  {extra}".rstrip()


def parse_sse(lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """Server-Sent Events messages (`id`, `event`, `data`) from a stream's lines."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            if "data" in fields:
                yield fields
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data" and "data" in fields:
            fields["data"] += "\n" + value
        elif name in ("id", "event", "data"):
            fields[name] = value


def _follow(
    api: ApiOptions, hub_url: str, position: int, types: list[str], remaining: int | None
) -> None:
    """Print events after `position` as they come, resuming after every interruption."""
    backoff = Backoff(base=0.5, cap=10.0)
    headers = {"Authorization": f"Bearer {api.api_key}", "User-Agent": f"portway/{__version__}"}
    timeout = httpx.Timeout(10.0, read=STREAM_READ_TIMEOUT)
    while True:
        try:
            with (
                httpx.Client(base_url=hub_url, headers=headers, timeout=timeout) as http,
                http.stream(
                    "GET", "/v1/events/stream", params={"type": types},
                    headers={"Last-Event-ID": str(position)},
                ) as response,
            ):  # fmt: skip
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(response)
                for message in parse_sse(response.iter_lines()):
                    event = json.loads(message["data"])
                    position = int(event["seq"])
                    api.output.line(event, _text(event))
                    backoff.reset()
                    if remaining is not None:
                        remaining -= 1
                        if remaining == 0:
                            return
        except httpx.TransportError:
            pass
        click.echo("event stream interrupted; reconnecting…", err=True)
        time.sleep(backoff.next())


@click.command()
@click.option(
    "--type",
    "types",
    multiple=True,
    type=click.Choice(EVENT_TYPES),
    help="Only this event type (repeat for more).",
)
@click.option(
    "--limit",
    type=click.IntRange(0, 10_000),
    default=20,
    show_default=True,
    help="How many of the latest events to show first.",
)
@click.option(
    "--after",
    type=click.IntRange(min=0),
    help="Instead of the latest, show every event after this seq (oldest first).",
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events (Ctrl-C stops).")
@click.option("--count", type=click.IntRange(min=1), help="Exit after printing this many.")
@api_options
def events(
    types: tuple[str, ...],
    limit: int,
    after: int | None,
    follow: bool,
    count: int | None,
    api: ApiOptions,
) -> None:
    """Show the workspace's events, oldest to newest; --follow watches for new ones.

    With --json: a JSON array, or one JSON object per line with --follow.
    """
    wanted = list(types)
    with api.client() as client:
        if after is not None:
            shown = list(client.paginate("/v1/events", after=after, type=wanted or None))
        else:
            newest = islice(client.paginate("/v1/events", type=wanted or None), limit)
            shown = list(newest)[::-1]
        if count is not None:
            shown = shown[:count]
        if shown:
            position = int(shown[-1]["seq"])
        elif after is not None:
            position = after
        else:
            latest = client.get("/v1/events", limit=1)["items"]
            position = int(latest[0]["seq"]) if latest else 0
        hub_url = client.hub_url
    if not follow:
        api.output.result(shown, lambda: "\n".join(map(_text, shown)) or "(none)")
        return
    for event in shown:
        api.output.line(event, _text(event))
    remaining = None if count is None else count - len(shown)
    if remaining != 0:
        _follow(api, hub_url, position, wanted, remaining)
