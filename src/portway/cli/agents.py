"""`portway agents`: list, inspect, enrol and remove agent identities."""

from __future__ import annotations

from typing import Any

import click

from portway.cli.common import ApiOptions, api_options, list_items, show_item, when
from portway.cli.group import PortwayGroup


def _status(agent: dict[str, Any]) -> str:
    return f"online ({agent['sessions']})" if agent["online"] else "offline"


@click.group(cls=PortwayGroup)
def agents() -> None:
    """Agent identities of your workspace."""


@agents.command("ls")
@api_options
def list_agents(api: ApiOptions) -> None:
    """List agents."""
    list_items(
        api,
        "/v1/agents",
        [
            ("NAME", lambda a: a["name"]),
            ("ID", lambda a: a["id"]),
            ("STATUS", _status),
            ("LABEL", lambda a: a["label"]),
            ("LAST SEEN", lambda a: when(a["lastSeenAt"])),
            ("VERSION", lambda a: a["version"]),
        ],
    )


@agents.command("show")
@click.argument("agent")
@api_options
def show_agent(agent: str, api: ApiOptions) -> None:
    """Show one agent (by name or id)."""
    show_item(
        api,
        f"/v1/agents/{agent}",
        lambda a: [
            ("name", a["name"]),
            ("id", a["id"]),
            ("status", _status(a)),
            ("label", a["label"]),
            ("last seen", when(a["lastSeenAt"])),
            ("version", a["version"]),
            ("created", when(a["createdAt"])),
        ],
    )


@agents.command("create")
@click.option("--name", help="Agent name (generated when omitted).")
@click.option("--label", help="Free-form label, e.g. the host it runs on.")
@api_options
def create_agent(name: str | None, label: str | None, api: ApiOptions) -> None:
    """Enrol an agent and print its token once (for agents configured by hand)."""
    body = {k: v for k, v in {"name": name, "label": label}.items() if v is not None}
    with api.client() as client:
        created = client.post("/v1/agents", body)
    api.output.result(
        created,
        f"Created agent {created['name']} ({created['id']}).\n"
        f"Token (shown once): {created['token']}",
    )


@agents.command("rm")
@click.argument("agent")
@api_options
def remove_agent(agent: str, api: ApiOptions) -> None:
    """Revoke and remove an agent (by name or id)."""
    with api.client() as client:
        found = client.get(f"/v1/agents/{agent}")
        client.delete(f"/v1/agents/{found['id']}")
    api.output.result(
        {"deleted": found["id"]},
        f"Removed agent {found['name']} ({found['id']}); its token no longer works.",
    )
