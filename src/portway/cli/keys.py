"""`portway keys`: API keys of your workspace."""

from __future__ import annotations

import click

from portway.cli.common import ApiOptions, api_options, list_items, when
from portway.cli.group import PortwayGroup


@click.group(cls=PortwayGroup)
def keys() -> None:
    """API keys of your workspace."""


@keys.command("ls")
@api_options
def list_keys(api: ApiOptions) -> None:
    """List active API keys."""
    list_items(
        api,
        "/v1/api-keys",
        [
            ("NAME", lambda k: k["name"]),
            ("ID", lambda k: k["id"]),
            ("PREFIX", lambda k: k["prefix"] + "…"),
            ("CREATED", lambda k: when(k["createdAt"])),
            ("LAST USED", lambda k: when(k["lastUsedAt"])),
        ],
    )


@keys.command("create")
@click.argument("name")
@api_options
def create_key(name: str, api: ApiOptions) -> None:
    """Create an API key and print it once."""
    with api.client() as client:
        created = client.post("/v1/api-keys", {"name": name})
    api.output.result(
        created,
        f"Created API key {created['name']} ({created['id']}).\nKey (shown once): {created['key']}",
    )


@keys.command("revoke")
@click.argument("key_id")
@api_options
def revoke_key(key_id: str, api: ApiOptions) -> None:
    """Revoke an API key by id; it stops working at once."""
    with api.client() as client:
        client.delete(f"/v1/api-keys/{key_id}")
    api.output.result({"revoked": key_id}, f"Revoked API key {key_id}.")
