"""`portway tunnels`: list, inspect, pause, resume, rename and remove tunnels.

Creating tunnels is `portway expose`'s job; these commands manage the ones that exist. A
tunnel is named by its name or its id everywhere.
"""

from __future__ import annotations

import json
from typing import Any

import click

from portway.cli.common import (
    ApiOptions,
    Columns,
    api_options,
    show_item,
    table,
    when,
)
from portway.cli.group import PortwayGroup
from portway.domain.tunnel_rules import PROTOCOLS, STATUSES


def _target(tunnel: dict[str, Any]) -> str:
    host = tunnel["target"]["host"]
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{tunnel['target']['port']}"


def _status(tunnel: dict[str, Any]) -> str:
    reason = tunnel.get("statusReason")
    return f"{tunnel['status']} ({reason})" if reason else tunnel["status"]


def _exposed(tunnel: dict[str, Any]) -> str | None:
    return tunnel["publicUrl"] if tunnel["public"] else None


def _size(count: int) -> str:
    """Bytes for people: `512 B`, `1.5 KiB`, `3.2 GiB`."""
    if count < 1024:
        return f"{count} B"
    value, unit = count / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"


def _detected(tunnel: dict[str, Any]) -> str | None:
    """`postgres 16.4, TLS until 2027-01-01` and any contradiction with the chosen protocol."""
    probe = tunnel.get("probe")
    if not probe:
        return None
    text: str = probe["protocol"] + (f" {probe['version']}" if probe.get("version") else "")
    if probe.get("tls"):
        text += f", TLS until {probe['tls']['notAfter']}"
    if probe.get("mismatch"):
        text += f" (warning: {probe['mismatch']})"
    return text


def _fields(tunnel: dict[str, Any]) -> list[tuple[str, Any]]:
    """The detail view `tunnels show` prints."""
    stats = tunnel["stats"]
    return [
        ("name", tunnel["name"]),
        ("id", tunnel["id"]),
        ("status", _status(tunnel)),
        ("target", _target(tunnel)),
        ("protocol", f"{tunnel['protocol']} (requested {tunnel['requestedProtocol']})"),
        ("detected", _detected(tunnel)),
        ("agent", tunnel["agentId"]),
        ("public url", _exposed(tunnel)),
        ("hub port", tunnel["hubPort"]),
        (
            "connections",
            f"{stats['activeConnections']} open, {stats['totalConnections']} total",
        ),
        ("traffic", f"{_size(stats['bytesIn'])} in, {_size(stats['bytesOut'])} out"),
        ("last connection", when(stats["lastConnectionAt"])),
        ("metadata", json.dumps(tunnel["metadata"]) if tunnel["metadata"] else None),
        ("created", when(tunnel["createdAt"])),
        ("expires", when(tunnel["expiresAt"]) if tunnel["expiresAt"] else "never"),
    ]


# The table `tunnels ls` prints.
COLUMNS: Columns = [
    ("NAME", lambda t: t["name"]),
    ("ID", lambda t: t["id"]),
    ("STATUS", _status),
    ("PROTOCOL", lambda t: t["protocol"]),
    ("TARGET", _target),
    ("PUBLIC", _exposed),
    ("CONNS", lambda t: t["stats"]["activeConnections"]),
    ("CREATED", lambda t: when(t["createdAt"])),
]


@click.group(cls=PortwayGroup)
def tunnels() -> None:
    """Tunnels of your workspace (create them with 'portway expose')."""


@tunnels.command("ls")
@click.option("--status", type=click.Choice(STATUSES), help="Only tunnels in this state.")
@click.option("--agent", help="Only tunnels exposed by this agent (name or id).")
@click.option("--protocol", type=click.Choice(PROTOCOLS), help="Only this protocol.")
@api_options
def list_tunnels(
    status: str | None, agent: str | None, protocol: str | None, api: ApiOptions
) -> None:
    """List tunnels, newest first."""
    with api.client() as client:
        agent_id = client.get(f"/v1/agents/{agent}")["id"] if agent else None
        items = list(
            client.paginate("/v1/tunnels", status=status, agentId=agent_id, protocol=protocol)
        )
    api.output.result(items, lambda: table(items, COLUMNS))


@tunnels.command("show")
@click.argument("tunnel")
@api_options
def show_tunnel(tunnel: str, api: ApiOptions) -> None:
    """Show one tunnel (by name or id) with its traffic counters."""
    show_item(api, f"/v1/tunnels/{tunnel}", _fields)


def _patch(api: ApiOptions, tunnel: str, body: dict[str, Any]) -> dict[str, Any]:
    with api.client() as client:
        found = client.get(f"/v1/tunnels/{tunnel}")
        updated: dict[str, Any] = client.patch(f"/v1/tunnels/{found['id']}", body)
    return updated


@tunnels.command("pause")
@click.argument("tunnel")
@api_options
def pause_tunnel(tunnel: str, api: ApiOptions) -> None:
    """Refuse new connections and close live ones until resumed."""
    updated = _patch(api, tunnel, {"status": "paused"})
    api.output.result(
        updated, f"Paused tunnel {updated['name']}; 'portway tunnels resume' brings it back."
    )


@tunnels.command("resume")
@click.argument("tunnel")
@api_options
def resume_tunnel(tunnel: str, api: ApiOptions) -> None:
    """Accept connections again after a pause."""
    updated = _patch(api, tunnel, {"status": "active"})
    api.output.result(updated, f"Resumed tunnel {updated['name']} (status: {_status(updated)}).")


@tunnels.command("rename")
@click.argument("tunnel")
@click.argument("new_name")
@api_options
def rename_tunnel(tunnel: str, new_name: str, api: ApiOptions) -> None:
    """Give a tunnel a new name (its public URL does not change)."""
    updated = _patch(api, tunnel, {"name": new_name})
    api.output.result(updated, f"Renamed tunnel {tunnel} to {updated['name']}.")


@tunnels.command("rm")
@click.argument("tunnel")
@api_options
def remove_tunnel(tunnel: str, api: ApiOptions) -> None:
    """Delete a tunnel with its connections and shares (by name or id)."""
    with api.client() as client:
        found = client.get(f"/v1/tunnels/{tunnel}")
        client.delete(f"/v1/tunnels/{found['id']}")
    api.output.result(
        {"deleted": found["id"]},
        f"Removed tunnel {found['name']} ({found['id']}); its connections and shares are gone.",
    )
