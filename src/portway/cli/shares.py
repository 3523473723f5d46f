"""`portway shares`: list, inspect and revoke share links, and read who used them.

Creating shares is `portway share`'s job. Shares are named by id (their names need not be
unique); tokens are never shown again after creation, only their prefix.
"""

from __future__ import annotations

from typing import Any

import click

from portway.cli.common import ApiOptions, api_options, list_items, show_item, table, when
from portway.cli.group import PortwayGroup
from portway.client import PortwayClient
from portway.domain.share_rules import SHARE_STATUSES


def _listed(values: list[str] | None) -> str:
    return "all" if values is None else ", ".join(values)


def _rate(share: dict[str, Any]) -> str:
    return "unlimited" if share["rateLimit"] is None else f"{share['rateLimit']}/min"


def _print_shares(items: list[dict[str, Any]], client: PortwayClient) -> None:
    """The `shares ls` table. Tunnel names make it readable; JSON has ids only, so only this
    view lists the tunnels."""
    names = {t["id"]: t["name"] for t in client.paginate("/v1/tunnels")}
    table(
        items,
        [
            ("NAME", lambda s: s["name"]),
            ("ID", lambda s: s["id"]),
            ("TUNNEL", lambda s: names.get(s["tunnelId"], s["tunnelId"])),
            ("STATUS", lambda s: s["status"]),
            ("TOKEN", lambda s: s["tokenPrefix"] + "…"),
            ("EXPIRES", lambda s: when(s["expiresAt"]) if s["expiresAt"] else "never"),
            ("USES", lambda s: s["accessCount"]),
        ],
    )


@click.group(cls=PortwayGroup)
def shares() -> None:
    """Share links of your workspace (create them with 'portway share')."""


@shares.command("ls")
@click.option("--tunnel", help="Only shares of this tunnel (name or id).")
@click.option("--status", type=click.Choice(SHARE_STATUSES), help="Only shares in this state.")
@api_options
def list_shares(tunnel: str | None, status: str | None, api: ApiOptions) -> None:
    """List shares, newest first."""
    with api.client() as client:
        tunnel_id = client.get(f"/v1/tunnels/{tunnel}")["id"] if tunnel else None
        items = list(client.paginate("/v1/shares", tunnelId=tunnel_id, status=status))
        api.output.result(items, lambda: _print_shares(items, client))


@shares.command("show")
@click.argument("share_id")
@api_options
def show_share(share_id: str, api: ApiOptions) -> None:
    """Show one share and its policy."""
    show_item(
        api,
        f"/v1/shares/{share_id}",
        lambda s: [
            ("name", s["name"]),
            ("id", s["id"]),
            ("tunnel", s["tunnelId"]),
            ("status", s["status"]),
            ("description", s["description"]),
            ("token", s["tokenPrefix"] + "… (shown only at creation)"),
            ("methods", _listed(s["allowedMethods"])),
            ("paths", _listed(s["allowedPaths"])),
            ("rate limit", _rate(s)),
            ("uses", s["accessCount"]),
            ("last used", when(s["lastAccessedAt"])),
            ("created", when(s["createdAt"])),
            ("expires", when(s["expiresAt"]) if s["expiresAt"] else "never"),
            ("revoked", when(s["revokedAt"])),
        ],
    )


@shares.command("revoke")
@click.argument("share_id")
@api_options
def revoke_share(share_id: str, api: ApiOptions) -> None:
    """Revoke a share: its link stops working at once."""
    with api.client() as client:
        client.delete(f"/v1/shares/{share_id}")
        found = client.get(f"/v1/shares/{share_id}")
    api.output.result(
        found, f"Revoked share {found['name']} ({found['id']}); its link no longer works."
    )


@shares.command("logs")
@click.argument("share_id")
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True,
    help="How many of the latest entries to show.",
)  # fmt: skip
@api_options
def share_logs(share_id: str, limit: int, api: ApiOptions) -> None:
    """Show who used a share and whether the hub let them through, newest first."""
    list_items(
        api,
        f"/v1/shares/{share_id}/access-logs",
        [
            ("TIME", lambda e: when(e["at"])),
            ("FROM", lambda e: e["remoteAddr"]),
            ("REQUEST", lambda e: " ".join(p for p in (e["method"], e["path"]) if p) or None),
            ("RESULT", lambda e: "allowed" if e["allowed"] else f"denied ({e['reason']})"),
            ("STATUS", lambda e: e["statusCode"]),
        ],
        limit=limit,
    )
