"""What every CLI command shares: hub/key resolution, `--json`, tables and detail views."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from itertools import islice
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from portway.cli.output import Output
from portway.cli.profile import DEFAULT_PROFILE, load_profile
from portway.client import DEFAULT_TIMEOUT, PortwayClient
from portway.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

Item = dict[str, Any]
# A table's columns: each header with how to read its cell from a row.
Columns = Sequence[tuple[str, Callable[[Item], Any]]]


def api_options(fn: F) -> F:
    """Add --hub, --api-key, --profile and --json; the command receives `api: ApiOptions`."""

    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.option("--profile", default=DEFAULT_PROFILE, show_default=True, help="Saved profile.")
    @click.option("--api-key", envvar="PORTWAY_API_KEY", help="API key [env: PORTWAY_API_KEY].")
    @click.option("--hub", envvar="PORTWAY_HUB", help="Hub API URL [env: PORTWAY_HUB].")
    @functools.wraps(fn)
    def wrapper(
        *args: Any, hub: str | None, api_key: str | None, profile: str, as_json: bool, **kw: Any
    ) -> Any:
        return fn(*args, api=ApiOptions(hub, api_key, profile, as_json), **kw)

    return wrapper  # type: ignore[return-value]


class ApiOptions:
    def __init__(self, hub: str | None, api_key: str | None, profile: str, as_json: bool) -> None:
        self.profile_name = profile
        saved = load_profile(profile)
        self.hub = hub or saved.hub
        self.api_key = api_key or saved.api_key
        self.output = Output(as_json)

    def client(self, timeout: float = DEFAULT_TIMEOUT) -> PortwayClient:
        if not self.hub:
            raise ConfigError("no hub configured: run 'portway login --hub URL --api-key KEY'")
        if not self.api_key:
            raise ConfigError("no API key: pass --api-key, set PORTWAY_API_KEY or 'portway login'")
        return PortwayClient(self.hub, self.api_key, timeout=timeout)


def when(value: str | None) -> str:
    """A timestamp from the API, shortened for a table (local time zone, minutes)."""
    if not value:
        return "-"
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def table(rows: Iterable[Item], columns: Columns) -> None:
    """Print `rows` as a table; `columns` maps a header to how to read the cell."""
    out = Table(box=None, pad_edge=False, header_style="bold")
    for header, _ in columns:
        out.add_column(header, overflow="fold")
    count = 0
    for row in rows:
        out.add_row(*("-" if (v := get(row)) is None else str(v) for _, get in columns))
        count += 1
    if count == 0:
        click.echo("(none)")
        return
    # Piped output keeps whole cells on one line so `grep`/`awk` see complete ids.
    width = None if sys.stdout.isatty() else 1000
    Console(file=sys.stdout, width=width).print(out)


def details(pairs: Sequence[tuple[str, Any]]) -> None:
    """Print one object as aligned `key  value` lines."""
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        click.echo(f"{key.ljust(width)}  {'-' if value is None else value}")


def list_items(
    api: ApiOptions, path: str, columns: Columns, *, limit: int | None = None, **params: Any
) -> None:
    """Every item of `path` (following pages; the first `limit`) as a table, or as JSON with
    --json: the `ls` commands. `params` filter the list; None ones are left out."""
    with api.client() as client:
        items = list(islice(client.paginate(path, **params), limit))
    api.output.result(items, lambda: table(items, columns))


def show_item(
    api: ApiOptions, path: str, fields: Callable[[Item], Sequence[tuple[str, Any]]]
) -> None:
    """The object at `path` as `key  value` lines of `fields`, or as JSON with --json: the
    `show` commands."""
    with api.client() as client:
        found = client.get(path)
    api.output.result(found, lambda: details(fields(found)))
