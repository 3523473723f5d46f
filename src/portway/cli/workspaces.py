"""`portway workspaces`: tenants of the hub (admin workspace keys only)."""

from __future__ import annotations

import click

from portway.cli.common import ApiOptions, api_options, list_items, when
from portway.cli.group import PortwayGroup


@click.group(cls=PortwayGroup)
def workspaces() -> None:
    """Workspaces of this hub (needs a key of the admin workspace)."""


@workspaces.command("ls")
@api_options
def list_workspaces(api: ApiOptions) -> None:
    """List workspaces."""
    list_items(
        api,
        "/v1/workspaces",
        [
            ("NAME", lambda w: w["name"] + (" (admin)" if w["isAdmin"] else "")),
            ("ID", lambda w: w["id"]),
            ("CREATED", lambda w: when(w["createdAt"])),
        ],
    )


@workspaces.command("create")
@click.argument("name")
@api_options
def create_workspace(name: str, api: ApiOptions) -> None:
    """Create a workspace and print its first API key once."""
    with api.client() as client:
        created = client.post("/v1/workspaces", {"name": name})
    api.output.result(
        created,
        f"Created workspace {created['name']} ({created['id']}).\n"
        f"Its API key (shown once): {created['apiKey']}",
    )


@workspaces.command("rm")
@click.argument("workspace_id")
@api_options
def remove_workspace(workspace_id: str, api: ApiOptions) -> None:
    """Delete a workspace and everything in it."""
    with api.client() as client:
        client.delete(f"/v1/workspaces/{workspace_id}")
    api.output.result(
        {"deleted": workspace_id}, f"Deleted workspace {workspace_id} and everything in it."
    )
