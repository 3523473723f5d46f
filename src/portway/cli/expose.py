"""`portway expose HOST:PORT`: create (or re-attach to) a tunnel on this agent and serve it."""

from __future__ import annotations

from typing import Any

import click

from portway.agent.runtime import AgentRuntime
from portway.cli.agent_setup import (
    direct_options,
    ensure_agent,
    reporter,
    run_foreground,
    sessions_option,
    settings_from,
)
from portway.cli.common import ApiOptions, api_options, details
from portway.client import PortwayClient
from portway.domain.addresses import AddressError, parse_host_port
from portway.errors import ApiError, ConfigError

EXPIRES = ("1h", "24h", "7d", "30d", "never")


def _find_or_create(
    client: PortwayClient, agent_id: str, target: str, body: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    name = body.get("name")
    if name:
        try:
            existing: dict[str, Any] = client.get(f"/v1/tunnels/{name}")
        except ApiError as exc:
            if exc.status != 404:
                raise
        else:
            if existing["agentId"] != agent_id:
                raise ConfigError(
                    f"tunnel {name} already exists on another agent; pick another --name"
                )
            shown = existing["target"]
            if parse_host_port(target) != parse_host_port(_hp(shown)):
                raise ConfigError(
                    f"tunnel {name} already exposes {_hp(shown)}; remove it or pick another --name"
                )
            return existing, False
    created: dict[str, Any] = client.post("/v1/tunnels", body)
    return created, True


def _hp(target: dict[str, Any]) -> str:
    host = target["host"]
    return f"[{host}]:{target['port']}" if ":" in host else f"{host}:{target['port']}"


@click.command()
@click.argument("target")
@click.option("--name", help="Tunnel name (generated from the service when omitted).")
@click.option(
    "--protocol",
    type=click.Choice(["auto", "tcp", "udp", "http", "https"]),
    default="auto",
    show_default=True,
)
@click.option("--public", is_flag=True, help="Give it a public URL (HTTP) or a hub port (TCP/UDP).")
@click.option("--hub-port", type=int, help="Hub port for a public TCP/UDP tunnel.")
@click.option("--expires", type=click.Choice(EXPIRES), help="Delete the tunnel after this long.")
@click.option("--temporary", is_flag=True, help="Delete the tunnel when this command stops.")
@click.option("--allow", multiple=True, metavar="CIDR[:PORTS]", help="Agent target policy: allow.")
@click.option("--deny", multiple=True, metavar="CIDR[:PORTS]", help="Agent target policy: deny.")
@click.option(
    "--no-e2e",
    "no_e2e",
    is_flag=True,
    help="Let the hub see reach traffic (it relays it decrypted, as for public ports).",
)
@direct_options
@sessions_option
@api_options
def expose(
    target: str, name: str | None, protocol: str, public: bool, hub_port: int | None,
    expires: str | None, temporary: bool, allow: tuple[str, ...], deny: tuple[str, ...],
    no_e2e: bool, direct_listen: str | None, advertise: tuple[str, ...], no_direct: bool,
    sessions: int,
    api: ApiOptions,
) -> None:  # fmt: skip
    """Expose HOST:PORT (e.g. localhost:5432) through the hub until Ctrl-C."""
    try:
        parse_host_port(target)
    except AddressError as exc:
        raise ConfigError(f"TARGET: {exc}") from None
    client = api.client()
    profile = ensure_agent(api, client, name=None, label=None)
    assert profile.agent_id
    body: dict[str, Any] = {"target": target, "agentId": profile.agent_id, "protocol": protocol}
    for key, value in {"name": name, "hubPort": hub_port, "expiresIn": expires}.items():
        if value is not None:
            body[key] = value
    if public:
        body["public"] = True
    if no_e2e:
        body["metadata"] = {"e2e": False}
    tunnel, created = _find_or_create(client, profile.agent_id, target, body)
    metadata = tunnel.get("metadata") or {}
    if not created and (metadata.get("e2e") is not False) == no_e2e:
        # Re-attached: the flag says how reach runs from now on, as it would have at creation.
        changed = {k: v for k, v in metadata.items() if k != "e2e"} | body.get("metadata", {})
        tunnel = client.patch(f"/v1/tunnels/{tunnel['id']}", {"metadata": changed})
    api.output.result(
        {**tunnel, "created": created},
        lambda: details(
            [
                ("tunnel", f"{tunnel['name']} ({'created' if created else 're-attached'})"),
                ("id", tunnel["id"]),
                ("target", _hp(tunnel["target"])),
                ("protocol", tunnel["protocol"]),
                ("status", tunnel["status"]),
                ("public URL", tunnel.get("publicUrl")),
                ("hub port", tunnel.get("hubPort")),
                ("reach it", f"portway reach {tunnel['name']}"),
            ]
        ),
    )
    settings = settings_from(
        profile, serve=True, hold_binds=False, allow=allow, deny=deny, sessions=sessions,
        direct=not no_direct, direct_listen=direct_listen, advertise=advertise,
    )  # fmt: skip

    def cleanup() -> None:
        try:
            if temporary:
                client.delete(f"/v1/tunnels/{tunnel['id']}")
                click.echo(f"Deleted temporary tunnel {tunnel['name']}.", err=True)
            else:
                click.echo(
                    f"Stopped serving {tunnel['name']}; it stays defined (status connecting).",
                    err=True,
                )
        finally:
            client.close()

    run_foreground(AgentRuntime(settings, on_state=reporter(api.output)), cleanup=cleanup)
